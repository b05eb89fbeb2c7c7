#ifndef TURF_CNCURSESW_SHIM_H
#define TURF_CNCURSESW_SHIM_H
/* SwiftPM drops pkg-config's -D flags: the wide-character API needs this before the header. */
#define NCURSES_WIDECHAR 1
#define _XOPEN_SOURCE_EXTENDED 1
#include <locale.h>
#include <ncursesw/curses.h>
#endif
