// Sites, pools and links: the static facts of a computing power network.
//
// A Site is one data centre of one provider; it holds Pools (cards of one
// accelerator model at one price). Sites carry where they are (area = the
// national hub or eastern cluster they connect through, jurisdiction =
// ISO 3166-2 province code), and what a card-hour costs them in energy and
// carbon. Links join areas (RTT, bandwidth available to cpn transfers, CNY per
// GB). The same JSON shapes serve data/topology/*.json, agent registration and
// the API. Plain values; a Topology is immutable once built and shareable.
#pragma once

#include <array>
#include <map>
#include <string>
#include <vector>

#include "src/core/catalog.h"
#include "src/core/job_spec.h"
#include "src/core/json_reader.h"
#include "src/core/status.h"

namespace cpn {

struct Pool {
  std::string id;           // full pool id, cpn:<node>/<provider>/<site>/<pool>
  std::string accelerator;  // catalog id
  int64_t cards = 0;
  double price_cny_per_card_hour = 0;
};

struct Site {
  std::string id;  // cpn:<node>/<provider>/<site>
  std::string name;
  std::string city;
  std::string area;          // hub/cluster key: "nx", "jjj", ...
  std::string jurisdiction;  // "CN-NX"
  double pue = 1.3;
  double electricity_cny_per_kwh = 0.6;
  double carbon_kg_per_kwh = 0.55;  // grid intensity
  double green_share = 0;           // 0..1 of energy from green power
  std::vector<Pool> pools;

  std::string country() const { return jurisdiction.substr(0, jurisdiction.find('-')); }
  std::string provider_id() const { return id.substr(0, id.rfind('/')); }
  const Pool* FindPool(std::string_view pool_id) const;
};

struct Link {
  std::string a, b;  // areas
  double rtt_ms = 20;
  double bandwidth_gbps = 10;  // what one transfer achieves
  // What all of cpn's concurrent transfers on the link share (0: one
  // transfer's bandwidth). The simulator gives each of n transfers
  // min(bandwidth_gbps, capacity_gbps / n).
  double capacity_gbps = 0;
  double cny_per_gb = 0.1;
};

// How electricity price and grid carbon intensity swing over a day in one
// region, as factors on the site's mean figures, one per hour of local time
// (hour 0 = midnight). Time-of-use tariffs make nights cheap; solar makes
// western noon grids cleaner. Used by the simulator; the server prices with
// the mean figures.
struct DiurnalCurve {
  std::array<double, 24> tariff_factor;
  std::array<double, 24> carbon_factor;
  DiurnalCurve() {
    tariff_factor.fill(1.0);
    carbon_factor.fill(1.0);
  }
};

// Parses a site; pools must name accelerators in `catalog`.
Result<Site> SiteFromJson(const Json& j, const std::string& path, const Catalog& catalog);
Json SiteToJson(const Site& s);
Json LinkToJson(const Link& l);

class Topology {
 public:
  static Result<Topology> FromJson(const Json& doc, const std::string& what,
                                   const Catalog& catalog);
  static Result<Topology> LoadFile(const std::string& path, const Catalog& catalog);
  // data/topology/china.json.
  static Result<Topology> LoadDefault(const Catalog& catalog);

  const std::vector<Site>& sites() const { return sites_; }
  const std::vector<Link>& links() const { return links_; }
  const Site* FindSite(std::string_view id) const;
  // Link between two areas: the listed one, the intra-area one, or the default.
  const Link& LinkBetween(const std::string& area_a, const std::string& area_b) const;

  // Builds a topology from registered sites and a link table (the server's view).
  static Topology Make(std::vector<Site> sites, std::vector<Link> links, Link intra_area,
                       Link default_link);
  const Link& intra_area() const { return intra_area_; }
  const Link& default_link() const { return default_link_; }
  // The area's daily curve, else the file's "default" one, else flat.
  const DiurnalCurve& Diurnal(const std::string& area) const;
  bool has_diurnal() const { return !diurnal_.empty(); }

 private:
  std::vector<Site> sites_;
  std::vector<Link> links_;
  Link intra_area_{"", "", 2, 100, 0};
  Link default_link_{"", "", 25, 10, 0.1};
  std::map<std::string, DiurnalCurve> diurnal_;  // by area, or "default"
};

Status ValidateJurisdiction(const std::string& j, const std::string& path);

// Whether data living at `data` may be processed at `site` under `rule`.
bool ResidencyAllows(Residency rule, const Site& data, const Site& site);

}  // namespace cpn
