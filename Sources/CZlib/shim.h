#ifndef GENETIKA_CZLIB_SHIM_H
#define GENETIKA_CZLIB_SHIM_H
#include <zlib.h>
#endif
