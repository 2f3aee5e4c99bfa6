#include "src/core/topology.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>
#include <tuple>

#include "src/core/data_dir.h"
#include "src/core/ids.h"

namespace cpn {

const Pool* Site::FindPool(std::string_view pool_id) const {
  for (const auto& p : pools) {
    if (p.id == pool_id) return &p;
  }
  return nullptr;
}

Status ValidateJurisdiction(const std::string& j, const std::string& path) {
  // ISO 3166-2 style: two capital letters, '-', 1-3 capital letters or digits.
  bool ok = j.size() >= 4 && j.size() <= 6 && j[2] == '-';
  for (size_t i = 0; ok && i < j.size(); ++i) {
    if (i == 2) continue;
    char c = j[i];
    ok = (c >= 'A' && c <= 'Z') || (i > 2 && c >= '0' && c <= '9');
  }
  if (!ok) {
    return InvalidArgument(path + ": '" + j + "' is not an ISO 3166-2 code such as CN-BJ or CN-NX");
  }
  return Status::Ok();
}

bool ResidencyAllows(Residency rule, const Site& data, const Site& site) {
  switch (rule) {
    case Residency::kAnywhere:
      return true;
    case Residency::kCountry:
      return site.country() == data.country();
    case Residency::kProvince:
      return site.jurisdiction == data.jurisdiction;
    case Residency::kSite:
      return site.id == data.id;
  }
  return false;
}

Result<Site> SiteFromJson(const Json& j, const std::string& path, const Catalog& catalog) {
  Site s;
  FieldReader r(j, path);
  r.String("id", &s.id);
  if (r.ok() && r.has("id")) r.Fail(ValidateSiteId(s.id, r.FieldPath("id")));
  r.String("name", &s.name);
  r.String("city", &s.city, false);
  r.String("area", &s.area);
  r.String("jurisdiction", &s.jurisdiction);
  r.Number("pue", &s.pue, 1.0, 3.0);
  r.Number("electricity_cny_per_kwh", &s.electricity_cny_per_kwh, 0, 10);
  r.Number("carbon_kg_per_kwh", &s.carbon_kg_per_kwh, 0, 2);
  r.Number("green_share", &s.green_share, 0, 1);
  r.Ignore("sources");  // citations for the figures, for people
  const Json* pools = r.Array("pools");
  if (r.ok() && !IsValidLabel(s.area)) r.FailField("area", "expected a label of [a-z0-9-]");
  if (r.ok()) r.Fail(ValidateJurisdiction(s.jurisdiction, r.FieldPath("jurisdiction")));
  if (r.ok() && pools != nullptr) {
    if (pools->size() > 256) r.FailField("pools", "at most 256 pools per site");
    std::set<std::string> ids;
    for (size_t i = 0; i < pools->size() && r.ok(); ++i) {
      std::string ppath = fmt::format("{}.pools[{}]", path, i);
      FieldReader pr((*pools)[i], ppath);
      Pool p;
      pr.String("id", &p.id);
      pr.String("accelerator", &p.accelerator);
      pr.Int("cards", &p.cards, 1, 1'000'000);
      pr.Number("price_cny_per_card_hour", &p.price_cny_per_card_hour, 0, 10'000);
      if (pr.ok()) pr.Fail(ValidatePoolId(p.id, pr.FieldPath("id")));
      if (pr.ok() && p.id.rfind(s.id + "/", 0) != 0) {
        pr.FailField("id", "pool id '" + p.id + "' must start with its site id '" + s.id + "/'");
      }
      if (pr.ok() && catalog.Find(p.accelerator) == nullptr) {
        pr.FailField("accelerator",
                     "unknown accelerator '" + p.accelerator + "' (see `cpn catalog`)");
      }
      if (pr.ok() && !ids.insert(p.id).second) pr.FailField("id", "duplicate pool id");
      r.Fail(pr.Finish());
      s.pools.push_back(p);
    }
  }
  CPN_RETURN_IF_ERROR(r.Finish());
  return s;
}

Json SiteToJson(const Site& s) {
  Json pools = Json::array();
  for (const auto& p : s.pools) {
    pools.push_back({{"id", p.id},
                     {"accelerator", p.accelerator},
                     {"cards", p.cards},
                     {"price_cny_per_card_hour", p.price_cny_per_card_hour}});
  }
  return Json{{"id", s.id},
              {"name", s.name},
              {"city", s.city},
              {"area", s.area},
              {"jurisdiction", s.jurisdiction},
              {"pue", s.pue},
              {"electricity_cny_per_kwh", s.electricity_cny_per_kwh},
              {"carbon_kg_per_kwh", s.carbon_kg_per_kwh},
              {"green_share", s.green_share},
              {"pools", pools}};
}

Json LinkToJson(const Link& l) {
  Json j{{"rtt_ms", l.rtt_ms}, {"bandwidth_gbps", l.bandwidth_gbps}, {"cny_per_gb", l.cny_per_gb}};
  if (l.capacity_gbps > 0) j["capacity_gbps"] = l.capacity_gbps;
  if (!l.a.empty()) {
    j["a"] = l.a;
    j["b"] = l.b;
  }
  return j;
}

namespace {

Result<Link> LinkFromJson(const Json& j, const std::string& path, bool with_ends) {
  Link l;
  FieldReader r(j, path);
  if (with_ends) {
    r.String("a", &l.a);
    r.String("b", &l.b);
  }
  r.Number("rtt_ms", &l.rtt_ms, 0, 10'000);
  r.Number("bandwidth_gbps", &l.bandwidth_gbps, 0.001, 100'000);
  r.Number("capacity_gbps", &l.capacity_gbps, 0.001, 10'000'000, false);
  if (r.ok() && l.capacity_gbps > 0 && l.capacity_gbps < l.bandwidth_gbps) {
    r.FailField("capacity_gbps", "must be at least bandwidth_gbps (one transfer's share)");
  }
  r.Number("cny_per_gb", &l.cny_per_gb, 0, 100);
  CPN_RETURN_IF_ERROR(r.Finish());
  return l;
}

}  // namespace

Result<Topology> Topology::FromJson(const Json& doc, const std::string& what,
                                    const Catalog& catalog) {
  Topology t;
  FieldReader r(doc, what);
  int64_t version = 0;
  r.Int("version", &version, 1, 1);
  r.Ignore("notes");
  const Json* sites = r.Array("sites");
  const Json* links = r.Array("links");
  const Json* intra = r.Object("intra_area_link");
  const Json* dflt = r.Object("default_link");
  const Json* diurnal = r.Object("diurnal", false);
  CPN_RETURN_IF_ERROR(r.Finish());
  if (diurnal != nullptr) {
    for (const auto& [area, curve] : diurnal->items()) {
      std::string path = fmt::format("{}.diurnal.{}", what, area);
      if (area != "default" && !IsValidLabel(area)) {
        return InvalidArgument(path + ": expected an area label of [a-z0-9-] or 'default'");
      }
      FieldReader cr(curve, path);
      const Json* tariff = cr.Array("tariff_factor");
      const Json* carbon = cr.Array("carbon_factor");
      CPN_RETURN_IF_ERROR(cr.Finish());
      DiurnalCurve c;
      for (auto [name, arr, out] : {std::tuple{"tariff_factor", tariff, &c.tariff_factor},
                                    std::tuple{"carbon_factor", carbon, &c.carbon_factor}}) {
        if (arr->size() != 24) {
          return InvalidArgument(
              fmt::format("{}.{}: expected 24 hourly factors, got {}", path, name, arr->size()));
        }
        for (size_t h = 0; h < 24; ++h) {
          const Json& v = (*arr)[h];
          if (!v.is_number() || v.get<double>() < 0 || v.get<double>() > 10) {
            return InvalidArgument(
                fmt::format("{}.{}[{}]: expected a number between 0 and 10", path, name, h));
          }
          (*out)[h] = v.get<double>();
        }
      }
      t.diurnal_[area] = c;
    }
  }
  std::set<std::string> ids;
  for (size_t i = 0; i < sites->size(); ++i) {
    auto s = SiteFromJson((*sites)[i], fmt::format("{}.sites[{}]", what, i), catalog);
    if (!s.ok()) return s.status();
    if (!ids.insert(s->id).second) {
      return InvalidArgument(fmt::format("{}.sites[{}].id: duplicate site '{}'", what, i, s->id));
    }
    t.sites_.push_back(std::move(s).value());
  }
  for (size_t i = 0; i < links->size(); ++i) {
    auto l = LinkFromJson((*links)[i], fmt::format("{}.links[{}]", what, i), true);
    if (!l.ok()) return l.status();
    t.links_.push_back(*l);
  }
  auto il = LinkFromJson(*intra, what + ".intra_area_link", false);
  if (!il.ok()) return il.status();
  auto dl = LinkFromJson(*dflt, what + ".default_link", false);
  if (!dl.ok()) return dl.status();
  t.intra_area_ = *il;
  t.default_link_ = *dl;
  std::sort(t.sites_.begin(), t.sites_.end(),
            [](const Site& a, const Site& b) { return a.id < b.id; });
  return t;
}

Result<Topology> Topology::LoadFile(const std::string& path, const Catalog& catalog) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  auto doc = ParseJson(*text, path);
  if (!doc.ok()) return doc.status();
  return FromJson(*doc, path, catalog);
}

Result<Topology> Topology::LoadDefault(const Catalog& catalog) {
  auto dir = FindDataDir();
  if (!dir.ok()) return dir.status();
  return LoadFile(*dir + "/topology/china.json", catalog);
}

Topology Topology::Make(std::vector<Site> sites, std::vector<Link> links, Link intra_area,
                        Link default_link) {
  Topology t;
  t.sites_ = std::move(sites);
  std::sort(t.sites_.begin(), t.sites_.end(),
            [](const Site& a, const Site& b) { return a.id < b.id; });
  t.links_ = std::move(links);
  t.intra_area_ = intra_area;
  t.default_link_ = default_link;
  return t;
}

const DiurnalCurve& Topology::Diurnal(const std::string& area) const {
  static const DiurnalCurve kFlat;
  auto it = diurnal_.find(area);
  if (it == diurnal_.end()) it = diurnal_.find("default");
  return it == diurnal_.end() ? kFlat : it->second;
}

const Site* Topology::FindSite(std::string_view id) const {
  auto it = std::lower_bound(sites_.begin(), sites_.end(), id,
                             [](const Site& s, std::string_view k) { return s.id < k; });
  return (it != sites_.end() && it->id == id) ? &*it : nullptr;
}

const Link& Topology::LinkBetween(const std::string& a, const std::string& b) const {
  if (a == b) return intra_area_;
  for (const auto& l : links_) {
    if ((l.a == a && l.b == b) || (l.a == b && l.b == a)) return l;
  }
  return default_link_;
}

}  // namespace cpn
