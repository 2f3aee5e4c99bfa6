#include "src/sched/explain.h"

namespace cpn::sched {

Json OptionToJson(const Option& o) {
  return Json{{"site", o.site_id},
              {"pool", o.pool_id},
              {"accelerator", o.accelerator},
              {"cards", o.cards},
              {"price_cny_per_card_hour", o.price_cny_per_card_hour},
              {"run_h", o.run_h},
              {"transfer_h", o.transfer_h},
              {"completion_h", o.completion_h},
              {"compute_cny", o.compute_cny},
              {"transfer_cny", o.transfer_cny},
              {"total_cny", o.total_cny},
              {"energy_kwh", o.energy_kwh},
              {"electricity_cny", o.electricity_cny},
              {"carbon_kg", o.carbon_kg},
              {"score", o.score},
              {"free_cards", o.free_cards}};
}

Json DecisionToJson(const Decision& d, const JobSpec& job, const Catalog& catalog,
                    const Topology& topology) {
  Json ranked = Json::array();
  for (const auto& o : d.ranked) ranked.push_back(OptionToJson(o));
  Json rejected = Json::array();
  for (const auto& r : d.rejected) {
    rejected.push_back(
        {{"pool", r.pool_id}, {"reason", RejectReasonName(r.reason)}, {"detail", r.detail}});
  }
  Json j{{"outcome", OutcomeName(d.outcome)},
         {"policy", PolicyName(job.policy)},
         {"summary", d.summary},
         {"options", ranked},
         {"rejected", rejected}};
  if (d.home) {
    j["home"] = OptionToJson(*d.home);
  } else {
    j["home"] = nullptr;
    j["home_note"] = d.home_note;
  }
  // Buying and running equivalent servers at home, for the chosen hardware.
  const Site* home_site = topology.FindSite(job.home_site);
  if (const Option* chosen = d.chosen(); chosen && home_site) {
    const AcceleratorModel* model = catalog.Find(chosen->accelerator);
    if (model != nullptr && model->server_price_cny > 0) {
      OwnershipCost c = EstimateOwnership(job, *model, chosen->run_h, *home_site);
      j["ownership"] = {{"accelerator", model->id},
                        {"servers", c.servers},
                        {"cards_per_server", model->cards_per_server},
                        {"capex_cny", c.capex_cny},
                        {"energy_cny", c.energy_cny},
                        {"total_cny", c.total_cny},
                        {"assumptions",
                         "buy ceil(cards / cards_per_server) servers at the catalog's estimated "
                         "server price, run them for the job at the home site's PUE and "
                         "electricity price; no staff, space or financing costs"}};
    }
  }
  return j;
}

}  // namespace cpn::sched
