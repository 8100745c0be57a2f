// cmocka for C++ test files: its header has no extern "C" of its own and
// needs these includes first.
#pragma once
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
extern "C" {
#include <cmocka.h>
}
