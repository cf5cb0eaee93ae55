// The umbrella header: everything a program using sealstore includes.
#pragma once

#include "sealstore/error.hpp"
#include "sealstore/pool.hpp"
#include "sealstore/ref.hpp"
#include "sealstore/stats.hpp"
#include "sealstore/store.hpp"
#include "sealstore/subscription.hpp"
#include "sealstore/value.hpp"
#include "sealstore/view.hpp"
#include "sealstore/writer.hpp"
