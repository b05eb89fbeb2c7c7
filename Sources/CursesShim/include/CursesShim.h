#ifndef TURF_CURSES_SHIM_H
#define TURF_CURSES_SHIM_H
/* Curses macros that do not import into Swift, exported as functions. */
int turf_attr_bold(void);
int turf_attr_reverse(void);
int turf_attr_dim(void);
int turf_color_pair(int n);
int turf_key_f(int n);
#endif
