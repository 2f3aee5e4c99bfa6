#include "src/server/api.h"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <charconv>
#include <optional>
#include <vector>

#include "src/core/ids.h"

namespace cpn {

using net::HttpRequest;
using net::HttpResponse;

int HttpStatusFor(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return 200;
    case StatusCode::kInvalidArgument:
      return 400;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kAlreadyExists:
      return 409;
    case StatusCode::kFailedPrecondition:
      return 409;
    case StatusCode::kResourceExhausted:
      return 429;
    case StatusCode::kUnavailable:
      return 503;
    case StatusCode::kDeadlineExceeded:
      return 504;
    case StatusCode::kInternal:
      return 500;
    case StatusCode::kUnauthenticated:
      return 401;
    case StatusCode::kPermissionDenied:
      return 403;
  }
  return 500;
}

HttpResponse JsonResponse(int status, const Json& body) {
  HttpResponse r;
  r.status = status;
  // Replace invalid UTF-8 rather than throw: bodies may echo user input.
  r.body = body.dump(-1, ' ', false, Json::error_handler_t::replace);
  return r;
}

HttpResponse ErrorResponse(const Status& s) {
  int status = HttpStatusFor(s.code());
  return JsonResponse(
      status,
      {{"error",
        {{"code", StatusCodeName(s.code())}, {"message", s.message()}, {"status", status}}}});
}

namespace {

HttpResponse Error(int status, const std::string& code, const std::string& message) {
  return JsonResponse(status,
                      {{"error", {{"code", code}, {"message", message}, {"status", status}}}});
}

std::vector<std::string> SplitPath(const std::string& path) {
  std::vector<std::string> parts;
  size_t start = 1;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    std::string part =
        path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (!part.empty()) parts.push_back(net::UrlDecode(part));
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return parts;
}

bool IsJson(const HttpRequest& req) {
  std::string ct = req.Header("content-type");
  return ct.rfind("application/json", 0) == 0;
}

Result<Json> JsonBody(const HttpRequest& req) {
  if (!IsJson(req)) {
    return Status(StatusCode::kInvalidArgument, "expected Content-Type: application/json, got '" +
                                                    req.Header("content-type").substr(0, 64) + "'");
  }
  return ParseJson(req.body, "request body");
}

Result<int64_t> IntParam(const std::map<std::string, std::string>& q, const std::string& name,
                         int64_t def, int64_t min, int64_t max) {
  auto it = q.find(name);
  if (it == q.end()) return def;
  int64_t v = 0;
  auto [p, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
  if (ec != std::errc() || p != it->second.data() + it->second.size() || v < min || v > max) {
    return InvalidArgument(
        fmt::format("query parameter {}: expected an integer between {} and "
                    "{}, got '{}'",
                    name, min, max, it->second.substr(0, 32)));
  }
  return v;
}

Status CheckParams(const std::map<std::string, std::string>& q,
                   std::initializer_list<const char*> allowed) {
  for (const auto& [k, v] : q) {
    bool ok = false;
    for (const char* a : allowed) ok = ok || k == a;
    if (!ok) {
      std::string list;
      for (const char* a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      return InvalidArgument("unknown query parameter '" + k.substr(0, 32) +
                             "' (accepted: " + (list.empty() ? "none" : list) + ")");
    }
  }
  return Status::Ok();
}

Json SiteRecordToJson(const SiteRecord& r) {
  return Json{{"id", r.id},
              {"state", r.state},
              {"registered_ms", r.registered_ms},
              {"last_heartbeat_ms", r.last_heartbeat_ms},
              {"drained", r.drained},
              {"site", r.site},
              {"telemetry", r.telemetry}};
}

// The provider that owns a site ("cpn:cn.nx/zwcloud" for
// "cpn:cn.nx/zwcloud/zw-01"); "" if the id is malformed.
std::string ProviderOf(const std::string& resource_id) {
  auto id = ParseResourceId(resource_id);
  return id.ok() ? id->ProviderId() : "";
}

// A provider acting on one of its own sites.
bool OwnsSite(const Principal& who, const std::string& site_id) {
  return who.role == Role::kProvider && ProviderOf(site_id) == who.subject;
}

HttpResponse Denied(const Principal& who, const std::string& what) {
  return ErrorResponse(PermissionDenied(who.Name() + " may not " + what));
}

Json TokenToJson(const TokenRecord& t) {
  Json j{{"id", t.id},
         {"role", t.role},
         {"subject", t.subject},
         {"user", t.user},
         {"created_ms", t.created_ms}};
  if (t.expires_ms != 0) j["expires_ms"] = t.expires_ms;
  if (t.revoked_ms != 0) j["revoked_ms"] = t.revoked_ms;
  return j;
}

double Cny(int64_t fen) { return static_cast<double>(fen) / 100.0; }

}  // namespace

Json BillToJson(const std::string& tenant, const std::string& month,
                const std::vector<LedgerEntry>& lines) {
  Json out_lines = Json::array();
  std::map<std::string, std::pair<double, int64_t>> by_acc;  // card-hours, fen
  double card_h = 0, kwh = 0, kg = 0, gb = 0;
  int64_t compute = 0, transfer = 0, total = 0;
  for (const auto& e : lines) {
    out_lines.push_back({{"job", e.job_id},
                         {"site", e.site_id},
                         {"accelerator", e.accelerator},
                         {"ended_ms", e.time_ms},
                         {"card_hours", e.card_hours},
                         {"price_cny_per_card_hour", e.price_cny_per_card_hour},
                         {"compute_cny", Cny(e.compute_fen)},
                         {"transfer_cny", Cny(e.transfer_fen)},
                         {"total_cny", Cny(e.charge_fen)},
                         {"energy_kwh", e.energy_kwh},
                         {"carbon_kg", e.carbon_kg},
                         {"data_gb", e.data_gb}});
    by_acc[e.accelerator].first += e.card_hours;
    by_acc[e.accelerator].second += e.charge_fen;
    card_h += e.card_hours;
    kwh += e.energy_kwh;
    kg += e.carbon_kg;
    gb += e.data_gb;
    compute += e.compute_fen;
    transfer += e.transfer_fen;
    total += e.charge_fen;
  }
  Json acc = Json::array();
  for (const auto& [name, v] : by_acc) {
    acc.push_back({{"accelerator", name}, {"card_hours", v.first}, {"total_cny", Cny(v.second)}});
  }
  return {{"tenant", tenant},
          {"month", month},
          {"currency", "CNY"},
          {"lines", out_lines},
          {"by_accelerator", acc},
          {"totals",
           {{"jobs", lines.size()},
            {"card_hours", card_h},
            {"energy_kwh", kwh},
            {"carbon_kg", kg},
            {"data_gb", gb},
            {"compute_cny", Cny(compute)},
            {"transfer_cny", Cny(transfer)},
            {"total_cny", Cny(total)},
            {"total_fen", total}}}};
}

Json StatementToJson(const std::string& provider, const std::string& month,
                     const std::vector<LedgerEntry>& lines, int64_t fee_bps) {
  Json out_lines = Json::array();
  std::map<std::string, std::pair<double, int64_t>> by_site;  // card-hours, revenue fen
  double card_h = 0;
  int64_t charged = 0, fee = 0, revenue = 0;
  for (const auto& e : lines) {
    out_lines.push_back({{"job", e.job_id},
                         {"tenant", e.tenant},
                         {"site", e.site_id},
                         {"accelerator", e.accelerator},
                         {"ended_ms", e.time_ms},
                         {"card_hours", e.card_hours},
                         {"charged_cny", Cny(e.charge_fen)},
                         {"fee_cny", Cny(e.fee_fen)},
                         {"revenue_cny", Cny(e.provider_fen)}});
    by_site[e.site_id].first += e.card_hours;
    by_site[e.site_id].second += e.provider_fen;
    card_h += e.card_hours;
    charged += e.charge_fen;
    fee += e.fee_fen;
    revenue += e.provider_fen;
  }
  Json sites = Json::array();
  for (const auto& [id, v] : by_site) {
    sites.push_back({{"site", id}, {"card_hours", v.first}, {"revenue_cny", Cny(v.second)}});
  }
  return {{"provider", provider},
          {"month", month},
          {"currency", "CNY"},
          {"platform_fee_bps", fee_bps},
          {"lines", out_lines},
          {"by_site", sites},
          {"totals",
           {{"jobs", lines.size()},
            {"card_hours", card_h},
            {"charged_cny", Cny(charged)},
            {"fee_cny", Cny(fee)},
            {"revenue_cny", Cny(revenue)},
            {"charged_fen", charged},
            {"fee_fen", fee},
            {"revenue_fen", revenue}}}};
}

HttpResponse Api::Handle(const HttpRequest& req) {
  requests_++;
  Principal who;
  who.role = Role::kOperator;
  who.user = "unauthenticated";  // --auth off: everyone operates
  HttpResponse r;
  bool allowed = true;
  if (auth_ != nullptr && net::PathOf(req.target) != "/healthz") {
    auto p = auth_->Verify(req.Header("authorization"));
    if (!p.ok()) {
      r = ErrorResponse(p.status());
      r.headers["WWW-Authenticate"] = "Bearer realm=\"cpn\"";
      allowed = false;
    } else if (require_site_certs_ && p->role == Role::kSite && req.client_cert_cn != p->subject) {
      r = ErrorResponse(Unauthenticated(
          "a site's token needs the site's client certificate (CN=" + p->subject + ") over TLS"));
      allowed = false;
    } else {
      who = *p;
      if (auto wait_s = auth_->Throttle(who)) {
        r = ErrorResponse(ResourceExhausted(fmt::format(
            "token {} is over its request rate; retry in {} s", who.token_id, *wait_s)));
        r.headers["Retry-After"] = std::to_string(*wait_s);
        allowed = false;
      }
    }
  }
  Audit audit;
  if (allowed) r = Route(req, who, &audit);
  // Every change, and every change refused for want of permission.
  if (!audit.action.empty() && !audit.written && (r.status < 300 || r.status == 403)) {
    AuditRecord a;
    a.principal = who.Name();
    a.action = audit.action;
    a.object = audit.object;
    a.peer = req.peer;
    a.outcome = r.status < 300 ? "ok" : "permission_denied";
    a.detail = r.status < 300 ? audit.rule
                              : Json::parse(r.body, nullptr, false)
                                    .value("error", Json::object())
                                    .value("message", std::string());
    Status s = platform_.RecordAudit(a);
    if (!s.ok()) r = ErrorResponse(s);
  }
  if (r.status >= 500)
    server_errors_++;
  else if (r.status >= 400)
    client_errors_++;
  return r;
}

HttpResponse Api::Route(const HttpRequest& req, const Principal& who, Audit* audit) {
  const bool op = who.role == Role::kOperator;
  // The rule that let a change through, for the audit log.
  auto allow = [&](std::string action, std::string object, std::string rule) {
    audit->action = std::move(action);
    audit->object = std::move(object);
    audit->rule = std::move(rule);
  };
  const std::string path = net::PathOf(req.target);
  const auto query = net::QueryOf(req.target);
  const auto parts = SplitPath(path);
  const std::string& m = req.method;
  auto method_not_allowed = [&](const char* allowed) {
    HttpResponse r = Error(405, "method_not_allowed",
                           m + " is not allowed on " + path + " (allowed: " + allowed + ")");
    r.headers["Allow"] = allowed;
    return r;
  };

  if (path == "/healthz") {
    if (m != "GET") return method_not_allowed("GET");
    return JsonResponse(200, {{"status", "ok"}});
  }
  if (path == "/metrics") {
    if (m != "GET") return method_not_allowed("GET");
    if (!op) return Denied(who, "read the platform's metrics");
    auto text = platform_.Metrics();
    if (!text.ok()) return ErrorResponse(text.status());
    HttpResponse r;
    r.content_type = "text/plain; version=0.0.4";
    r.body = *text + fmt::format(
                         "# HELP cpn_http_requests_total HTTP requests handled.\n"
                         "# TYPE cpn_http_requests_total counter\n"
                         "cpn_http_requests_total {}\n"
                         "# HELP cpn_http_client_errors_total Requests answered 4xx.\n"
                         "# TYPE cpn_http_client_errors_total counter\n"
                         "cpn_http_client_errors_total {}\n"
                         "# HELP cpn_http_server_errors_total Requests answered 5xx.\n"
                         "# TYPE cpn_http_server_errors_total counter\n"
                         "cpn_http_server_errors_total {}\n",
                         requests_.load(), client_errors_.load(), server_errors_.load());
    return r;
  }
  if (parts.empty() || parts[0] != "v1") {
    return Error(
        404, "not_found",
        "no such endpoint: " + path.substr(0, 200) + " (the API lives under /v1; see docs/api.md)");
  }

  // /v1/catalog
  if (parts.size() == 2 && parts[1] == "catalog") {
    if (m != "GET") return method_not_allowed("GET");
    return JsonResponse(200, platform_.catalog().ToJson());
  }

  // /v1/providers, /v1/providers/{node}/{provider}
  if (parts.size() >= 2 && parts[1] == "providers") {
    auto to_json = [](const ProviderRecord& p) {
      return Json{{"id", p.id},
                  {"name", p.name},
                  {"contact", p.contact},
                  {"state", p.state},
                  {"registered_ms", p.registered_ms}};
    };
    if (parts.size() == 2) {
      if (m == "GET") {
        auto list = platform_.ListProviders();
        if (!list.ok()) return ErrorResponse(list.status());
        Json out = Json::array();
        for (const auto& p : *list) out.push_back(to_json(p));
        return JsonResponse(200, {{"providers", out}});
      }
      if (m == "POST") {
        auto body = JsonBody(req);
        if (!body.ok()) return ErrorResponse(body.status());
        const std::string pid = body->is_object() ? body->value("id", std::string()) : "";
        allow("provider.register", pid, op ? "operator" : "provider registers itself");
        if (!op && !(who.role == Role::kProvider && pid == who.subject)) {
          return Denied(who, "register provider " + pid.substr(0, 128));
        }
        auto p = platform_.RegisterProvider(*body);
        if (!p.ok()) return ErrorResponse(p.status());
        return JsonResponse(200, to_json(*p));
      }
      return method_not_allowed("GET, POST");
    }
    if (parts.size() == 4) {
      if (m != "DELETE") return method_not_allowed("DELETE");
      std::string id = "cpn:" + parts[2] + "/" + parts[3];
      allow("provider.deregister", id, "operator");
      if (!op) return Denied(who, "deregister providers");
      Status s = platform_.DeregisterProvider(id);
      if (!s.ok()) return ErrorResponse(s);
      return JsonResponse(200, {{"id", id}, {"state", "deregistered"}});
    }
    return Error(404, "not_found", "provider paths are /v1/providers/{node}/{provider}");
  }

  // /v1/sites, /v1/sites/{node}/{provider}/{site}[/heartbeat]
  if (parts.size() >= 2 && parts[1] == "sites") {
    if (parts.size() == 2) {
      if (m == "GET") {
        auto sites = platform_.ListSites();
        if (!sites.ok()) return ErrorResponse(sites.status());
        Json list = Json::array();
        for (const auto& s : *sites) list.push_back(SiteRecordToJson(s));
        return JsonResponse(200, {{"sites", list}});
      }
      if (m == "POST") {
        auto body = JsonBody(req);
        if (!body.ok()) return ErrorResponse(body.status());
        const std::string sid = body->is_object() ? body->value("id", std::string()) : "";
        const bool own_site = who.role == Role::kSite && sid == who.subject;
        const bool own_provider = OwnsSite(who, sid);
        allow("site.register", sid,
              op         ? "operator"
              : own_site ? "site registers itself"
                         : "provider owns the site");
        if (!op && !own_site && !own_provider) {
          return Denied(who, "register site " + sid.substr(0, 128));
        }
        auto r = platform_.RegisterSite(*body);
        if (!r.ok()) return ErrorResponse(r.status());
        return JsonResponse(200, SiteRecordToJson(*r));
      }
      return method_not_allowed("GET, POST");
    }
    if (parts.size() == 6 && (parts[5] == "drain" || parts[5] == "resume")) {
      if (m != "POST") return method_not_allowed("POST");
      std::string id = "cpn:" + parts[2] + "/" + parts[3] + "/" + parts[4];
      allow("site." + parts[5], id, op ? "operator" : "provider owns the site");
      if (!op && !OwnsSite(who, id)) {
        return Denied(who, parts[5] + " site " + id.substr(0, 128));
      }
      auto r = platform_.SetDrained(id, parts[5] == "drain");
      if (!r.ok()) return ErrorResponse(r.status());
      return JsonResponse(200, SiteRecordToJson(*r));
    }
    if (parts.size() == 5 || (parts.size() == 6 && parts[5] == "heartbeat")) {
      std::string id = "cpn:" + parts[2] + "/" + parts[3] + "/" + parts[4];
      if (parts.size() == 6) {
        if (m != "POST") return method_not_allowed("POST");
        if (!op && !(who.role == Role::kSite && who.subject == id)) {
          return Denied(who, "send heartbeats for " + id.substr(0, 128));
        }
        auto body = JsonBody(req);
        if (!body.ok()) return ErrorResponse(body.status());
        auto reply = platform_.Heartbeat(id, *body);
        if (!reply.ok()) return ErrorResponse(reply.status());
        Json a = Json::array();
        for (const auto& x : reply->assignments) {
          a.push_back({{"job", x.job_id},
                       {"pool", x.pool_id},
                       {"accelerator", x.accelerator},
                       {"cards", x.cards},
                       {"run", x.run}});
          if (!x.dataset_dir.empty()) a.back()["dataset_dir"] = x.dataset_dir;
        }
        Json stagings = Json::array();
        for (const auto& o : reply->stagings) {
          stagings.push_back({{"job", o.job_id},
                              {"path", o.path},
                              {"to",
                               {{"site", o.dest_site},
                                {"address", o.dest_address},
                                {"port", o.dest_port},
                                {"path", o.dest_path},
                                {"tls", o.dest_tls}}}});
        }
        return JsonResponse(
            200, {{"assignments", a}, {"cancel", reply->cancels}, {"stagings", stagings}});
      }
      if (m == "GET") {
        auto r = platform_.GetSite(id);
        if (!r.ok()) return ErrorResponse(r.status());
        return JsonResponse(200, SiteRecordToJson(*r));
      }
      if (m == "DELETE") {
        allow("site.deregister", id, op ? "operator" : "provider owns the site");
        if (!op && !OwnsSite(who, id)) {
          return Denied(who, "deregister site " + id.substr(0, 128));
        }
        Status s = platform_.DeregisterSite(id);
        if (!s.ok()) return ErrorResponse(s);
        return JsonResponse(200, {{"id", id}, {"state", "deregistered"}});
      }
      return method_not_allowed("GET, DELETE");
    }
    return Error(404, "not_found",
                 "site paths are /v1/sites/{node}/{provider}/{site}, e.g. "
                 "/v1/sites/cn.nx/zwcloud/zw-01");
  }

  if (parts.size() == 2 && parts[1] == "resources") {
    if (m != "GET") return method_not_allowed("GET");
    Status s = CheckParams(
        query, {"accelerator", "area", "jurisdiction", "software", "max_price", "min_free"});
    if (!s.ok()) return ErrorResponse(s);
    ResourceQuery q;
    if (query.count("accelerator")) q.accelerator = query.at("accelerator");
    if (query.count("area")) q.area = query.at("area");
    if (query.count("jurisdiction")) q.jurisdiction = query.at("jurisdiction");
    if (query.count("software")) q.software = query.at("software");
    if (query.count("max_price")) {
      const std::string& v = query.at("max_price");
      char* end = nullptr;
      double d = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !(d >= 0)) {
        return ErrorResponse(
            InvalidArgument("query parameter max_price: expected a "
                            "non-negative number, got '" +
                            v.substr(0, 32) + "'"));
      }
      q.max_price = d;
    }
    auto min_free = IntParam(query, "min_free", 0, 0, kMaxCardsPerJob);
    if (!min_free.ok()) return ErrorResponse(min_free.status());
    q.min_free = *min_free;
    if (!q.accelerator.empty() && platform_.catalog().Find(q.accelerator) == nullptr) {
      return ErrorResponse(NotFound("unknown accelerator '" + q.accelerator.substr(0, 64) +
                                    "' (GET /v1/catalog lists them)"));
    }
    auto r = platform_.Resources(q);
    if (!r.ok()) return ErrorResponse(r.status());
    return JsonResponse(200, {{"pools", *r}});
  }

  if (parts.size() == 2 && parts[1] == "quotes") {
    if (m != "POST") return method_not_allowed("POST");
    auto body = JsonBody(req);
    if (!body.ok()) return ErrorResponse(body.status());
    auto spec = JobSpecFromJson(*body, platform_.catalog());
    if (!spec.ok()) return ErrorResponse(spec.status());
    auto q = platform_.Quote(*spec);
    if (!q.ok()) return ErrorResponse(q.status());
    return JsonResponse(200, *q);
  }

  if (parts.size() >= 2 && parts[1] == "tokens") return Tokens(req, parts, who, audit);

  // /v1/tenants/{tenant}/quota: operators set it; the tenant reads its own.
  if (parts.size() == 4 && parts[1] == "tenants" && parts[3] == "quota") {
    const std::string& tenant = parts[2];
    if (m == "GET") {
      if (!op && !(who.role == Role::kTenant && who.subject == tenant)) {
        return Denied(who, "read the quota of " + tenant.substr(0, 128));
      }
      auto q = platform_.GetQuota(tenant);
      if (!q.ok()) return ErrorResponse(q.status());
      Json out = q->has_value() ? QuotaToJson(**q) : Json{{"max_cards", Json::object()}};
      out["tenant"] = tenant;
      out["set"] = q->has_value();
      return JsonResponse(200, out);
    }
    if (m == "PUT") {
      allow("quota.set", tenant, "operator");
      if (!op) return Denied(who, "set quotas");
      auto body = JsonBody(req);
      if (!body.ok()) return ErrorResponse(body.status());
      auto q = QuotaFromJson(*body);
      if (!q.ok()) return ErrorResponse(q.status());
      Status s = platform_.SetQuota(tenant, *q);
      if (!s.ok()) return ErrorResponse(s);
      Json out = QuotaToJson(*q);
      out["tenant"] = tenant;
      out["set"] = true;
      return JsonResponse(200, out);
    }
    return method_not_allowed("GET, PUT");
  }

  // /v1/bills (a tenant's invoice) and /v1/statements (a provider's
  // settlement) for one month, from the ledger.
  if (parts.size() == 2 && (parts[1] == "bills" || parts[1] == "statements")) {
    if (m != "GET") return method_not_allowed("GET");
    const bool bill = parts[1] == "bills";
    const char* party = bill ? "tenant" : "provider";
    Status s = CheckParams(query, {party, "month"});
    if (!s.ok()) return ErrorResponse(s);
    std::string subject = query.count(party) ? query.at(party) : "";
    const Role owner_role = bill ? Role::kTenant : Role::kProvider;
    if (!op) {
      if (who.role != owner_role) return Denied(who, std::string("read ") + parts[1]);
      if (subject.empty()) subject = who.subject;
      if (subject != who.subject) {
        return Denied(who, std::string("read the ") + (bill ? "bill" : "statement") + " of " +
                               subject.substr(0, 128));
      }
    }
    if (subject.empty()) {
      return ErrorResponse(InvalidArgument(std::string("query parameter ") + party + " is needed"));
    }
    std::string month =
        query.count("month")
            ? query.at("month")
            : fmt::format("{:%Y-%m}",
                          fmt::gmtime(static_cast<std::time_t>(platform_.NowMs() / 1000)));
    if (month.size() != 7 || month[4] != '-' ||
        month.find_first_not_of("0123456789-") != std::string::npos) {
      return ErrorResponse(InvalidArgument("query parameter month: expected YYYY-MM, got '" +
                                           month.substr(0, 16) + "'"));
    }
    LedgerFilter f;
    f.month = month;
    (bill ? f.tenant : f.provider_id) = subject;
    auto lines = platform_.Ledger(f);
    if (!lines.ok()) return ErrorResponse(lines.status());
    return JsonResponse(
        200, bill ? BillToJson(subject, month, *lines)
                  : StatementToJson(subject, month, *lines, platform_.options().platform_fee_bps));
  }

  if (parts.size() == 2 && parts[1] == "audit") {
    if (m != "GET") return method_not_allowed("GET");
    if (!op) return Denied(who, "read the audit log");
    Status s = CheckParams(query, {"after", "limit", "principal", "action", "object"});
    if (!s.ok()) return ErrorResponse(s);
    auto after = IntParam(query, "after", 0, 0, int64_t{1} << 62);
    if (!after.ok()) return ErrorResponse(after.status());
    auto limit = IntParam(query, "limit", 100, 1, 1000);
    if (!limit.ok()) return ErrorResponse(limit.status());
    AuditFilter f;
    f.after_seq = *after;
    f.limit = *limit;
    if (query.count("principal")) f.principal = query.at("principal");
    if (query.count("action")) f.action = query.at("action");
    if (query.count("object")) f.object = query.at("object");
    auto lines = platform_.ListAudit(f);
    if (!lines.ok()) return ErrorResponse(lines.status());
    Json list = Json::array();
    for (const auto& a : *lines) {
      list.push_back({{"seq", a.seq},
                      {"time_ms", a.time_ms},
                      {"principal", a.principal},
                      {"action", a.action},
                      {"object", a.object},
                      {"peer", a.peer},
                      {"outcome", a.outcome},
                      {"detail", a.detail}});
    }
    Json out{{"audit", list}};
    if (static_cast<int64_t>(lines->size()) == f.limit) out["next_after"] = lines->back().seq;
    return JsonResponse(200, out);
  }

  if (parts.size() >= 2 && parts[1] == "jobs") {
    if (parts.size() == 2) {
      if (m == "POST") {
        auto body = JsonBody(req);
        if (!body.ok()) return ErrorResponse(body.status());
        auto spec = JobSpecFromJson(*body, platform_.catalog());
        if (!spec.ok()) return ErrorResponse(spec.status());
        allow("job.submit", "", op ? "operator" : "tenant submits its own job");
        if (!op && who.role != Role::kTenant) return Denied(who, "submit jobs");
        if (!op && spec->tenant != who.subject) {
          return Denied(who, "submit jobs for tenant " + spec->tenant +
                                 " (a tenant token submits for its own tenant: " + who.subject +
                                 ")");
        }
        AuditRecord line;
        line.principal = who.Name();
        line.action = audit->action;
        line.peer = req.peer;
        line.outcome = "ok";
        line.detail = audit->rule;
        bool replayed = false;
        uint64_t durable_seq = 0;
        auto job = platform_.SubmitNoWait(*spec, req.Header("idempotency-key"), &replayed, &line,
                                          &durable_seq);
        audit->written = true;  // with the job, in its transaction (or a replay: nothing new)
        if (!job.ok()) return ErrorResponse(job.status());
        HttpResponse resp = JsonResponse(replayed ? 200 : 201, platform_.JobToJson(*job));
        if (replayed) resp.headers["Idempotent-Replayed"] = "true";
        // Acknowledged once on disk; the thread serves others meanwhile.
        // (The callback may outlive this Api, so it captures only the
        // platform, which outlives every server.)
        resp.send_after = [&platform = platform_,
                           durable_seq](std::function<void(std::optional<HttpResponse>)> done) {
          platform.WhenDurable(durable_seq, [done = std::move(done)](Status s) {
            done(s.ok() ? std::nullopt : std::optional(ErrorResponse(s)));
          });
        };
        return resp;
      }
      if (m == "GET") {
        Status s = CheckParams(query, {"tenant", "state", "limit", "page_token"});
        if (!s.ok()) return ErrorResponse(s);
        auto limit = IntParam(query, "limit", 50, 1, 1000);
        if (!limit.ok()) return ErrorResponse(limit.status());
        JobFilter f;
        f.limit = *limit;
        if (query.count("tenant")) f.tenant = query.at("tenant");
        if (!op && who.role != Role::kTenant) return Denied(who, "list jobs");
        if (!op && query.count("tenant") && f.tenant != who.subject) {
          return JsonResponse(200, {{"jobs", Json::array()}});  // none of theirs is visible
        }
        if (!op) f.tenant = who.subject;
        if (query.count("state")) f.state = query.at("state");
        if (query.count("page_token")) f.after_id = query.at("page_token");
        auto jobs = platform_.ListJobs(f);
        if (!jobs.ok()) return ErrorResponse(jobs.status());
        Json list = Json::array();
        for (const auto& j : *jobs) list.push_back(platform_.JobToJson(j));
        Json out{{"jobs", list}};
        if (static_cast<int64_t>(jobs->size()) == f.limit) out["next_page_token"] = jobs->back().id;
        return JsonResponse(200, out);
      }
      return method_not_allowed("GET, POST");
    }
    const std::string& id = parts[2];
    const bool agent_report = parts.size() == 4 && (parts[3] == "status" || parts[3] == "staging" ||
                                                    (parts[3] == "logs" && m == "POST"));
    if (!op && agent_report && who.role != Role::kSite) {
      return Denied(who, "send a site's reports");
    }
    if (!op && !agent_report && who.role != Role::kTenant) {
      return Denied(who, "read or cancel jobs");
    }
    // The job as read for a tenant's ownership check, so reading it once is enough.
    std::optional<JobRecord> checked;
    if (!op && !agent_report) {
      // Another tenant's job reads exactly as a job that does not exist.
      auto job = platform_.GetJob(id);
      if (!job.ok()) return ErrorResponse(job.status());
      if (job->tenant != who.subject) return ErrorResponse(NotFound("job " + id + " not found"));
      checked = std::move(job).value();
    }
    if (parts.size() == 3) {
      if (m != "GET") return method_not_allowed("GET");
      if (checked) return JsonResponse(200, platform_.JobToJson(*checked));
      auto job = platform_.GetJob(id);
      if (!job.ok()) return ErrorResponse(job.status());
      return JsonResponse(200, platform_.JobToJson(*job));
    }
    if (parts.size() == 4 && parts[3] == "cancel") {
      if (m != "POST") return method_not_allowed("POST");
      allow("job.cancel", id, op ? "operator" : "tenant owns the job");
      auto job = platform_.Cancel(id);
      if (!job.ok()) return ErrorResponse(job.status());
      return JsonResponse(200, platform_.JobToJson(*job));
    }
    if (parts.size() == 4 && parts[3] == "events") {
      if (m != "GET") return method_not_allowed("GET");
      auto events = platform_.Events(id);
      if (!events.ok()) return ErrorResponse(events.status());
      Json list = Json::array();
      for (const auto& e : *events) {
        list.push_back(
            {{"seq", e.seq}, {"time_ms", e.time_ms}, {"state", e.state}, {"reason", e.reason}});
      }
      return JsonResponse(200, {{"job", id}, {"events", list}});
    }
    if (parts.size() == 4 && parts[3] == "status") {
      if (m != "POST") return method_not_allowed("POST");
      auto body = JsonBody(req);
      if (!body.ok()) return ErrorResponse(body.status());
      FieldReader r(*body, "status");
      JobReport rep;
      int64_t exit_code = 0;
      r.String("site", &rep.site_id);
      r.String("state", &rep.state);
      r.String("reason", &rep.reason, false);
      bool has_exit = r.has("exit_code");
      r.Int("exit_code", &exit_code, -1000, 1000, false);
      Status s = r.Finish();
      if (!s.ok()) return ErrorResponse(s);
      if (has_exit) rep.exit_code = exit_code;
      if (!op && rep.site_id != who.subject) {
        return Denied(who, "report for site " + rep.site_id.substr(0, 128));
      }
      s = platform_.Report(id, rep);
      if (!s.ok()) return ErrorResponse(s);
      auto job = platform_.GetJob(id);
      if (!job.ok()) return ErrorResponse(job.status());
      return JsonResponse(200, platform_.JobToJson(*job));
    }
    if (parts.size() == 4 && parts[3] == "staging") {
      if (m != "POST") return method_not_allowed("POST");
      auto body = JsonBody(req);
      if (!body.ok()) return ErrorResponse(body.status());
      FieldReader r(*body, "staging");
      StagingReport rep;
      r.String("site", &rep.site_id);
      r.String("to", &rep.dest_site, false);
      r.String("state", &rep.state);
      r.String("reason", &rep.reason, false);
      r.Int("bytes_total", &rep.bytes_total, 0, int64_t{1} << 60, false);
      r.Int("bytes_sent", &rep.bytes_sent, 0, int64_t{1} << 60, false);
      r.Int("chunks_skipped", &rep.chunks_skipped, 0, int64_t{1} << 40, false);
      r.Number("seconds", &rep.seconds, 0, 1e9, false);
      Status s = r.Finish();
      if (!s.ok()) return ErrorResponse(s);
      if (!op && rep.site_id != who.subject) {
        return Denied(who, "report for site " + rep.site_id.substr(0, 128));
      }
      s = platform_.ReportStaging(id, rep);
      if (!s.ok()) return ErrorResponse(s);
      auto job = platform_.GetJob(id);
      if (!job.ok()) return ErrorResponse(job.status());
      return JsonResponse(200, platform_.JobToJson(*job));
    }
    if (parts.size() == 4 && parts[3] == "logs") {
      if (m == "POST") {
        Status s = CheckParams(query, {"site", "offset"});
        if (!s.ok()) return ErrorResponse(s);
        std::string ct = req.Header("content-type");
        if (ct.rfind("application/octet-stream", 0) != 0 && ct.rfind("text/plain", 0) != 0) {
          return ErrorResponse(InvalidArgument(
              "log uploads need Content-Type: application/octet-stream or text/plain"));
        }
        auto offset = IntParam(query, "offset", -1, 0, int64_t{1} << 50);
        if (!offset.ok()) return ErrorResponse(offset.status());
        if (*offset < 0 || !query.count("site")) {
          return ErrorResponse(InvalidArgument("log uploads need ?site=...&offset=N"));
        }
        if (!op && query.at("site") != who.subject) {
          return Denied(who, "upload logs for site " + query.at("site").substr(0, 128));
        }
        auto size = platform_.AppendLog(id, query.at("site"), *offset, req.body);
        if (!size.ok()) return ErrorResponse(size.status());
        return JsonResponse(200, {{"job", id}, {"log_bytes", *size}});
      }
      if (m == "GET") {
        Status s = CheckParams(query, {"offset", "max_bytes", "follow", "wait_ms"});
        if (!s.ok()) return ErrorResponse(s);
        auto offset = IntParam(query, "offset", 0, 0, int64_t{1} << 50);
        if (!offset.ok()) return ErrorResponse(offset.status());
        auto max_bytes = IntParam(query, "max_bytes", 1 << 20, 1, 16 << 20);
        if (!max_bytes.ok()) return ErrorResponse(max_bytes.status());
        auto wait_ms = IntParam(query, "wait_ms", 20'000, 0, 60'000);
        if (!wait_ms.ok()) return ErrorResponse(wait_ms.status());
        bool follow =
            query.count("follow") && query.at("follow") != "0" && query.at("follow") != "false";
        auto job = platform_.GetJob(id);
        if (!job.ok()) return ErrorResponse(job.status());
        auto data = platform_.ReadLog(id, *offset, *max_bytes);
        if (!data.ok()) return ErrorResponse(data.status());
        bool done = IsTerminalState(job->state);
        HttpResponse r;
        // Follow mode: hold the request until there is new output or the job ends.
        if (follow && data->empty() && !done && req.may_wait) {
          r.wait_up_to_ms = *wait_ms;
          return r;
        }
        r.content_type = "application/octet-stream";
        r.body = std::move(*data);
        r.headers["X-Cpn-Log-Offset"] =
            std::to_string(*offset + static_cast<int64_t>(r.body.size()));
        r.headers["X-Cpn-Job-State"] = job->state;
        return r;
      }
      return method_not_allowed("GET, POST");
    }
  }
  return Error(404, "not_found", "no such endpoint: " + m + " " + path.substr(0, 200));
}

// /v1/tokens: issue (POST), list (GET), revoke (DELETE /v1/tokens/{id}).
// Operators issue any token; a tenant issues tokens for users of its own
// tenant; a provider issues its own and its sites' tokens. Everyone sees and
// revokes only tokens of subjects they own; others' read as missing.
HttpResponse Api::Tokens(const HttpRequest& req, const std::vector<std::string>& parts,
                         const Principal& who, Audit* audit) {
  const bool op = who.role == Role::kOperator;
  if (auth_ == nullptr) {
    return ErrorResponse(
        FailedPrecondition("this server runs without authentication (--auth off)"));
  }
  auto owns = [&](const std::string& role, const std::string& subject) {
    if (op) return true;
    if (who.role == Role::kTenant) return role == "tenant" && subject == who.subject;
    if (who.role == Role::kProvider) {
      return (role == "provider" && subject == who.subject) ||
             (role == "site" && ProviderOf(subject) == who.subject);
    }
    return false;
  };
  if (who.role == Role::kSite) return Denied(who, "manage tokens");
  if (parts.size() == 2 && req.method == "POST") {
    auto body = JsonBody(req);
    if (!body.ok()) return ErrorResponse(body.status());
    FieldReader r(*body, "token");
    std::string role_name, subject, user;
    double ttl_h = 0;
    r.String("role", &role_name);
    r.String("subject", &subject, false);
    r.String("user", &user, false);
    r.Number("ttl_h", &ttl_h, 0, 24.0 * 3650, false);
    Status s = r.Finish();
    if (!s.ok()) return ErrorResponse(s);
    auto role = ParseRole(role_name);
    if (!role.ok()) return ErrorResponse(role.status());
    audit->action = "token.create";
    audit->object = role_name + ":" + subject;
    audit->rule = op ? "operator" : "issuer owns the subject";
    if (!owns(role_name, subject)) {
      return Denied(who, "issue a " + role_name + " token for '" + subject.substr(0, 128) + "'");
    }
    auto issued = auth_->Issue(*role, subject, user, static_cast<int64_t>(ttl_h * 3600 * 1000));
    if (!issued.ok()) return ErrorResponse(issued.status());
    audit->object = issued->record.id;
    Json out = TokenToJson(issued->record);
    out["token"] = issued->secret;
    out["note"] = "the token is shown only now; the platform keeps only its hash";
    return JsonResponse(201, out);
  }
  if (parts.size() == 2 && req.method == "GET") {
    Json list = Json::array();
    for (const auto& t : auth_->List()) {
      if (owns(t.role, t.subject)) list.push_back(TokenToJson(t));
    }
    return JsonResponse(200, {{"tokens", list}});
  }
  if (parts.size() == 3 && req.method == "DELETE") {
    auto t = auth_->Find(parts[2]);
    if (!t || !owns(t->role, t->subject)) {
      return ErrorResponse(NotFound("no token " + parts[2].substr(0, 64)));
    }
    audit->action = "token.revoke";
    audit->object = t->id;
    audit->rule = op ? "operator" : "issuer owns the subject";
    Status s = auth_->Revoke(t->id);
    if (!s.ok()) return ErrorResponse(s);
    return JsonResponse(200, TokenToJson(*auth_->Find(t->id)));
  }
  if (parts.size() == 2) {
    HttpResponse r = Error(405, "method_not_allowed", req.method + " is not allowed on /v1/tokens");
    r.headers["Allow"] = "GET, POST";
    return r;
  }
  if (parts.size() == 3) {
    HttpResponse r =
        Error(405, "method_not_allowed", req.method + " is not allowed on /v1/tokens/{id}");
    r.headers["Allow"] = "DELETE";
    return r;
  }
  return Error(404, "not_found", "token paths are /v1/tokens and /v1/tokens/{id}");
}

}  // namespace cpn
