// pix2struct/memory.hpp — the default of every memory budget (the model's activations and caches,
// preprocessing's picture buffers): the machine's physical memory.
#pragma once

#include <cstdint>

#include <unistd.h>

namespace pix2struct {

// The machine's physical memory in bytes (0 when the system does not say).
inline int64_t physical_memory_bytes() {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? int64_t(pages) * page : 0;
}

}  // namespace pix2struct
