#ifndef GENETIKA_CSQLITE_SHIM_H
#define GENETIKA_CSQLITE_SHIM_H
#include <sqlite3.h>
#endif
