#ifndef GENETIKA_CRDKAFKA_SHIM_H
#define GENETIKA_CRDKAFKA_SHIM_H
/* The project-local build from scripts/install-deps.sh wins over a system librdkafka:
   Debian bookworm's 2.0.2 cannot talk to modern brokers. */
#if __has_include("../../.deps/librdkafka/include/librdkafka/rdkafka.h")
#include "../../.deps/librdkafka/include/librdkafka/rdkafka.h"
#else
#include <librdkafka/rdkafka.h>
#endif
#endif
