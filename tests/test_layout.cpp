// The header map in pix2struct.hpp and docs/ARCHITECTURE.md stay true: every header they name exists,
// every header of include/ and kernels/ is in the map, and ARCHITECTURE.md names every backend primitive.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

namespace fs = std::filesystem;

namespace {

const fs::path kRoot = PIX2STRUCT_SOURCE_DIR;

std::string read(const fs::path& p) {
    std::ifstream in(p);
    REQUIRE(in);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

// Header paths named in `text`: words ending in .hpp or .cuh, relative to include/pix2struct/ unless
// they start with kernels/, tests/ or bench/ (or are written in full).
std::set<fs::path> named_headers(const std::string& text) {
    std::set<fs::path> out;
    static const std::regex word(R"(([A-Za-z0-9_./]+)\.(hpp|cuh))");
    for (auto it = std::sregex_iterator(text.begin(), text.end(), word); it != std::sregex_iterator(); ++it) {
        std::string p = (*it)[0];
        if (p.rfind("include/pix2struct/", 0) == 0) p = p.substr(19);
        if (p.rfind("pix2struct/", 0) == 0) p = p.substr(11);
        const bool from_root = p.rfind("kernels/", 0) == 0 || p.rfind("tests/", 0) == 0 || p.rfind("bench/", 0) == 0;
        out.insert(from_root ? kRoot / p : kRoot / "include" / "pix2struct" / p);
    }
    return out;
}

}  // namespace

TEST_CASE("pix2struct.hpp lists every header, and only headers that exist") {
    const std::string umbrella = read(kRoot / "include" / "pix2struct" / "pix2struct.hpp");
    const size_t begin = umbrella.find("// LAYOUT"), end = umbrella.find("#pragma once");
    REQUIRE(begin != std::string::npos);
    REQUIRE(end > begin);
    const std::set<fs::path> listed = named_headers(umbrella.substr(begin, end - begin));
    for (const fs::path& p : listed) {
        CAPTURE(p.string());
        CHECK(fs::exists(p));
    }
    int headers = 0;
    for (const char* dir : {"include", "kernels"})
        for (const auto& e : fs::recursive_directory_iterator(kRoot / dir)) {
            const std::string ext = e.path().extension().string();
            if (ext != ".hpp" && ext != ".cuh") continue;
            CAPTURE(e.path().string());
            CHECK(listed.count(e.path()) == 1);
            ++headers;
        }
    CHECK(headers >= 40);
}

TEST_CASE("docs/ARCHITECTURE.md names only headers that exist") {
    const std::set<fs::path> named = named_headers(read(kRoot / "docs" / "ARCHITECTURE.md"));
    CHECK(named.size() >= 10);
    for (const fs::path& p : named) {
        CAPTURE(p.string());
        CHECK(fs::exists(p));
    }
}

// The primitives are the calls `b.name(` of the Backend concept (backend/backend.hpp) and the optional ones
// its helpers after it look for (`requires { b.name(`): each is named in ARCHITECTURE.md's list.
TEST_CASE("docs/ARCHITECTURE.md names every primitive of the Backend concept") {
    const std::string concept_src = read(kRoot / "include" / "pix2struct" / "backend" / "backend.hpp");
    const std::string doc = read(kRoot / "docs" / "ARCHITECTURE.md");
    const size_t begin = concept_src.find("concept Backend");
    REQUIRE(begin != std::string::npos);
    std::set<std::string> primitives;
    static const std::regex call(R"(\bb\.([a-z_]+)\()");
    for (auto it = std::sregex_iterator(concept_src.begin() + long(begin), concept_src.end(), call);
         it != std::sregex_iterator(); ++it)
        primitives.insert((*it)[1]);
    CHECK(primitives.size() >= 17);  // 12 required (allocations included) and 5 optional
    for (const std::string& name : primitives) {
        CAPTURE(name);
        CHECK(std::regex_search(doc, std::regex("\\b" + name + "\\b")));
    }
}

TEST_CASE("CMakeLists.txt, meson.build and version.hpp declare the same version") {
    const std::regex header(R"re(#define PIX2STRUCT_VERSION "([0-9.]+)")re"),
        cmake(R"re(project\(pix2struct VERSION ([0-9.]+))re"), meson(R"re(version : '([0-9.]+)')re");
    std::smatch h, c, m;
    const std::string hs = read(kRoot / "include" / "pix2struct" / "version.hpp"), cs = read(kRoot / "CMakeLists.txt"),
                      ms = read(kRoot / "meson.build");
    REQUIRE(std::regex_search(hs, h, header));
    REQUIRE(std::regex_search(cs, c, cmake));
    REQUIRE(std::regex_search(ms, m, meson));
    CHECK(h[1] == c[1]);
    CHECK(h[1] == m[1]);
}
