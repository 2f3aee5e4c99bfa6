// Small hand-made catalogs and topologies for unit tests, with round numbers
// so that expected costs and times can be computed by hand in the tests.
#pragma once

#include "src/core/catalog.h"
#include "src/core/topology.h"

namespace cpn::testing {

// Two models: "test-gpu" (100 TFLOPS FP16, 400 W, 80 GB, cuda+pytorch, training
// efficiency 0.5) and "test-npu" (200 TFLOPS FP16, 300 W, 32 GB, cann+pytorch,
// training efficiency 0.5).
Catalog TestCatalog();

// Three sites:
//   east  cpn:cn.bj/acme/bj-1 area jjj CN-BJ: test-gpu x 8 at 10 CNY/card-h, PUE 1.5,
//         carbon 0.6, green 0
//   west  cpn:cn.nx/acme/nx-1 area nx  CN-NX: test-gpu x 16 at 5 CNY/card-h, PUE 1.1,
//         carbon 0.6, green 0.5; test-npu x 8 at 4 CNY/card-h
//   abroad cpn:sg.sg/acme/sg-1 area sg SG-01: test-gpu x 16 at 3 CNY/card-h (cheapest)
// Link jjj-nx: 20 ms, 10 Gbit/s, 0.05 CNY/GB; default link 50 ms, 1 Gbit/s, 0.2 CNY/GB.
Topology TestTopology(const Catalog& catalog);

}  // namespace cpn::testing
