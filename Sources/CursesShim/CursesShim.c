#define NCURSES_WIDECHAR 1
#define _XOPEN_SOURCE_EXTENDED 1
#include <ncursesw/curses.h>
#include "CursesShim.h"

int turf_attr_bold(void) { return (int)A_BOLD; }
int turf_attr_reverse(void) { return (int)A_REVERSE; }
int turf_attr_dim(void) { return (int)A_DIM; }
int turf_color_pair(int n) { return (int)COLOR_PAIR(n); }
int turf_key_f(int n) { return KEY_F(n); }
