// The compiler's cache prefetch hint (GCC/Clang `__builtin_prefetch`), which Swift cannot
// spell: it starts loading the cache line at `address` and returns at once. A hint only: it
// never faults and changes nothing the program can observe but time.
static inline void genetika_prefetch(const void *address) { __builtin_prefetch(address, 1, 3); }
