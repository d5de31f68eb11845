#ifndef GENETIKA_CPOSTGRES_SHIM_H
#define GENETIKA_CPOSTGRES_SHIM_H
#include <libpq-fe.h>
#endif
