// pix2struct/version.hpp — the library's version (CMakeLists.txt and meson.build declare the same one;
// tests/test_layout.cpp checks that they agree).
#pragma once

#define PIX2STRUCT_VERSION "0.1.0"
