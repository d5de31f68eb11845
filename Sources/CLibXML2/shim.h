#ifndef GENETIKA_CLIBXML2_SHIM_H
#define GENETIKA_CLIBXML2_SHIM_H
/* libxml2 built with ICU includes the system's <unicode/*.h>, whose UErrorCode clashes with
   the copy inside Foundation's _FoundationICU module. Genetika never touches ICU through
   libxml2 (no xmlCharEncodingHandler fields are used), so hide it. */
#include <libxml/xmlversion.h>
#undef LIBXML_ICU_ENABLED
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/xmlerror.h>
#endif
