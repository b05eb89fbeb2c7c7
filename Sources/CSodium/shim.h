#ifndef TURF_CSODIUM_SHIM_H
#define TURF_CSODIUM_SHIM_H
#include <sodium.h>
#endif
