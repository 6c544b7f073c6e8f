#ifndef HATO_CORE_DURATION_H
#define HATO_CORE_DURATION_H
/*
 * duration: "500ms", "30s", "5m", "2h", "3d" (a bare number is seconds)
 * and sizes "512", "64K", "50M", "1G". Pure parsers with a reason on error.
 */
#include <stdint.h>

int duration_parse(const char *s, uint64_t *ms, const char **why);
int size_parse(const char *s, uint64_t *bytes, const char **why);
/* Monotonic and wall-clock time in milliseconds. */
uint64_t clock_mono_ms(void);
uint64_t clock_wall_ms(void);

#endif
