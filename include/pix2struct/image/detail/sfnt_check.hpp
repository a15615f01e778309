// pix2struct/image/detail/sfnt_check.hpp — checks a TrueType file before stb_truetype reads it.
//
//   detail::check_truetype(bytes, name);   // throws pix2struct::Error naming the font and the problem
//
// stb_truetype trusts its input: it follows offsets and counts from the file without comparing them with
// the file's size, recurses into composite glyphs without a depth limit, and asserts on formats it does
// not know. This check reads every structure stb_truetype (v1.26) will read for the calls we make — the
// table directory, head, maxp, hhea/hmtx, loca/glyf (every glyph's flags and coordinates, every composite
// component), the cmap subtable it selects, kern and GPOS pair adjustment — with bounds checks, and
// refuses a file in which any of them would lead stb_truetype outside the file or into undefined
// behaviour. Fonts with CFF outlines are refused (stb_truetype's CFF reader is unbounded); glyph indices
// a cmap yields past maxp.numGlyphs are mapped to .notdef by the caller (Font::glyph_index).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "pix2struct/error.hpp"

namespace pix2struct::detail {

class TrueTypeCheck {
public:
    TrueTypeCheck(std::span<const unsigned char> file, std::string name) : f_(file), name_(std::move(name)) {}

    // Limits on what a composite glyph may expand to (stb_truetype copies every component's points).
    static constexpr int kMaxComponentDepth = 16;
    static constexpr uint64_t kMaxGlyphPoints = 1 << 20;

    // Returns the offset of the font (0, or the first font of a collection) as stbtt_GetFontOffsetForIndex.
    uint32_t run() {
        const uint32_t start = font_start();
        const uint16_t num_tables = u16(start + 4, "the table directory");
        need(start + 12, 16ull * num_tables, "the table directory");
        dir_ = start + 12;
        n_tables_ = num_tables;

        const Table glyf = table("glyf"), cff = table("CFF ");
        if (!glyf.present && cff.present)
            bad("it has CFF (PostScript) outlines; only TrueType (glyf) outlines are supported");
        for (const char* tag : {"cmap", "head", "hhea", "hmtx", "maxp", "loca", "glyf"})
            if (!table(tag).present) bad("the required table '", tag, "' is missing");

        const Table head = table("head");
        at_least(head, 54, "head");
        const uint16_t upem = u16(head.off + 18, "head");
        if (upem < 16 || upem > 16384) bad("head.unitsPerEm is ", upem, " (the format allows 16 to 16384)");
        const uint16_t loca_format = u16(head.off + 50, "head");
        if (loca_format > 1) bad("head.indexToLocFormat is ", loca_format, " (0 or 1)");

        const Table maxp = table("maxp");
        at_least(maxp, 6, "maxp");
        num_glyphs_ = u16(maxp.off + 4, "maxp");
        if (num_glyphs_ == 0) bad("maxp.numGlyphs is 0");

        const Table hhea = table("hhea"), hmtx = table("hmtx");
        at_least(hhea, 36, "hhea");
        const uint16_t long_metrics = u16(hhea.off + 34, "hhea");
        if (long_metrics == 0 || long_metrics > num_glyphs_)
            bad("hhea.numberOfHMetrics is ", long_metrics, " for ", num_glyphs_, " glyphs");
        at_least(hmtx, 4ull * long_metrics + 2ull * (num_glyphs_ - long_metrics), "hmtx");

        check_glyphs(table("loca"), glyf, loca_format);
        check_cmap(table("cmap"));
        if (const Table kern = table("kern"); kern.present) check_kern(kern);
        if (const Table gpos = table("GPOS"); gpos.present) check_gpos(gpos);
        return start;
    }

    uint32_t num_glyphs() const { return num_glyphs_; }

private:
    struct Table {
        uint64_t off = 0, len = 0;
        bool present = false;
    };
    struct Component {
        uint16_t glyph;
        double scale_x, scale_y, shift;  // |x'| <= scale_x * bound + shift (and y with scale_y)
    };
    struct Glyph {
        uint64_t points = 0;    // vertices stb_truetype allocates for it, components expanded
        double bound = 0;       // largest |coordinate|, components transformed
        std::vector<Component> components;
        bool composite = false;
        uint8_t state = 0;      // composite expansion: 0 not yet, 1 in progress, 2 done
    };

    template <class... Parts>
    [[noreturn]] void bad(const Parts&... parts) const {
        fail(name_, ": not a usable TrueType font: ", parts...);
    }
    void need(uint64_t off, uint64_t len, const char* what) const {
        if (off > f_.size() || len > f_.size() - off)
            bad(what, " needs bytes ", off, "..", off + len, " of a ", f_.size(), "-byte file");
    }
    // Reads inside [lo, hi): a table or a structure within one.
    void inside(const Table& t, uint64_t off, uint64_t len, const char* what) const {
        if (off < t.off || off > t.off + t.len || len > t.off + t.len - off)
            bad("'", what, "' data at byte ", off, " (", len, " bytes) runs past the table's end");
    }
    uint8_t u8(uint64_t off, const char* what) const { return need(off, 1, what), f_[off]; }
    uint16_t u16(uint64_t off, const char* what) const {
        need(off, 2, what);
        return uint16_t(f_[off] << 8 | f_[off + 1]);
    }
    uint32_t u32(uint64_t off, const char* what) const {
        need(off, 4, what);
        return uint32_t(f_[off]) << 24 | uint32_t(f_[off + 1]) << 16 | uint32_t(f_[off + 2]) << 8 | f_[off + 3];
    }
    void at_least(const Table& t, uint64_t len, const char* tag) const {
        if (t.len < len) bad("table '", tag, "' is ", t.len, " bytes, needs ", len);
    }

    uint32_t font_start() const {
        const uint32_t tag = u32(0, "the file header");
        auto is_font = [](uint32_t t) {
            return t == 0x31000000 || t == 0x74797031 /*typ1*/ || t == 0x4F54544F /*OTTO*/ || t == 0x00010000 ||
                   t == 0x74727565 /*true*/;
        };
        if (is_font(tag)) return 0;
        if (tag == 0x74746366 /*ttcf*/) {
            const uint32_t version = u32(4, "the collection header");
            if ((version == 0x00010000 || version == 0x00020000) && int32_t(u32(8, "the collection header")) > 0) {
                const uint32_t start = u32(12, "the collection header");
                if (is_font(u32(start, "the collection's first font"))) return start;
            }
        }
        bad("the file does not start with a TrueType/OpenType signature");
    }

    // The first directory entry with this tag, as stb_truetype's lookup; its range must lie in the file.
    Table table(const char* tag) const {
        const uint32_t want = uint32_t(uint8_t(tag[0])) << 24 | uint32_t(uint8_t(tag[1])) << 16 |
                              uint32_t(uint8_t(tag[2])) << 8 | uint8_t(tag[3]);
        for (uint32_t i = 0; i < n_tables_; ++i) {
            const uint64_t rec = dir_ + 16ull * i;
            if (u32(rec, "the table directory") != want) continue;
            Table t{u32(rec + 8, "the table directory"), u32(rec + 12, "the table directory"), true};
            if (t.off > f_.size() || t.len > f_.size() - t.off)
                bad("table '", tag, "' (bytes ", t.off, "..", t.off + t.len, ") lies past the end of the ",
                    f_.size(), "-byte file");
            return t;
        }
        return {};
    }

    // loca and every glyph: its flags and coordinates (simple) or components (composite), then the
    // expansion of composites (no cycles, bounded depth, points and coordinates).
    void check_glyphs(const Table& loca, const Table& glyf, uint16_t loca_format) {
        const uint64_t entry = loca_format == 0 ? 2 : 4;
        at_least(loca, entry * (num_glyphs_ + 1ull), "loca");
        auto offset = [&](uint32_t g) -> uint64_t {
            return loca_format == 0 ? 2ull * u16(loca.off + 2ull * g, "loca") : u32(loca.off + 4ull * g, "loca");
        };
        glyphs_.assign(num_glyphs_, {});
        uint64_t begin = offset(0);
        for (uint32_t g = 0; g < num_glyphs_; ++g) {
            const uint64_t end = offset(g + 1);
            if (end < begin || end > glyf.len)
                bad("loca gives glyph ", g, " the bytes ", begin, "..", end, " of a ", glyf.len, "-byte glyf table");
            if (end > begin) check_glyph(g, Table{glyf.off + begin, end - begin, true});
            begin = end;
        }
        for (uint32_t g = 0; g < num_glyphs_; ++g)
            if (glyphs_[g].composite) expand(g, 0);
    }

    void check_glyph(uint32_t g, const Table& t) {
        at_least(t, 10, "glyf (a glyph)");
        const int16_t contours = int16_t(u16(t.off, "glyf"));
        Glyph& out = glyphs_[g];
        if (contours == 0) return;
        if (contours < 0) return check_composite(g, t, out);
        uint64_t p = t.off + 10;
        inside(t, p, 2ull * contours + 2, "glyf");
        std::vector<uint16_t> ends(contours);
        for (int c = 0; c < contours; ++c) {
            ends[c] = u16(p + 2ull * c, "glyf");
            if (c > 0 && ends[c] <= ends[c - 1]) bad("glyph ", g, ": its contour end points are not increasing");
        }
        const uint32_t n = ends.back() + 1u;
        p += 2ull * contours;
        p += 2ull + u16(p, "glyf");  // instructions
        std::vector<uint8_t> flags(n);
        for (uint32_t i = 0; i < n;) {  // flags, with repeats
            inside(t, p, 1, "glyf");
            const uint8_t fl = f_[p++];
            uint32_t repeat = 0;
            if (fl & 8) inside(t, p, 1, "glyf"), repeat = f_[p++];
            for (uint32_t r = 0; r <= repeat && i < n; ++r) flags[i++] = fl;
        }
        // A contour of one off-curve point makes stb_truetype read the point after it (past the glyph).
        for (int c = 0; c < contours; ++c)
            if ((c == 0 ? 0 : ends[c - 1] + 1) == ends[c] && !(flags[ends[c]] & 1))
                bad("glyph ", g, ": contour ", c, " is a single off-curve point");
        auto coordinates = [&](uint8_t short_bit, uint8_t same_bit) {
            int64_t v = 0;
            for (uint32_t i = 0; i < n; ++i) {
                if (flags[i] & short_bit) {
                    inside(t, p, 1, "glyf");
                    v += (flags[i] & same_bit) ? f_[p] : -int64_t(f_[p]);
                    p += 1;
                } else if (!(flags[i] & same_bit)) {
                    inside(t, p, 2, "glyf");
                    v += int16_t(f_[p] << 8 | f_[p + 1]);
                    p += 2;
                }
                if (v < -32768 || v > 32767) bad("glyph ", g, ": point ", i, " lies outside the 16-bit range");
                out.bound = std::max(out.bound, double(v < 0 ? -v : v));
            }
        };
        coordinates(2, 16);
        coordinates(4, 32);
        out.points = n + 2ull * contours;
    }

    void check_composite(uint32_t g, const Table& t, Glyph& out) {
        out.composite = true;
        uint64_t p = t.off + 10;
        for (bool more = true; more;) {
            inside(t, p, 4, "glyf");
            const uint16_t flags = u16(p, "glyf"), child = u16(p + 2, "glyf");
            p += 4;
            if (!(flags & 2)) bad("glyph ", g, ": a component placed by matching points (not supported)");
            const uint64_t args = (flags & 1) ? 4 : 2;
            inside(t, p, args, "glyf");
            const double dx = (flags & 1) ? int16_t(u16(p, "glyf")) : int8_t(f_[p]);
            const double dy = (flags & 1) ? int16_t(u16(p + 2, "glyf")) : int8_t(f_[p + 1]);
            p += args;
            double a = 1, b = 0, c = 0, d = 1;
            auto f2dot14 = [&](uint64_t at) { return int16_t(u16(at, "glyf")) / 16384.0; };
            if (flags & 8) {
                inside(t, p, 2, "glyf"), a = d = f2dot14(p), p += 2;
            } else if (flags & 64) {
                inside(t, p, 4, "glyf"), a = f2dot14(p), d = f2dot14(p + 2), p += 4;
            } else if (flags & 128) {
                inside(t, p, 8, "glyf");
                a = f2dot14(p), b = f2dot14(p + 2), c = f2dot14(p + 4), d = f2dot14(p + 6), p += 8;
            }
            // stb_truetype: x' = m (a x + c y + dx), y' = n (b x + d y + dy), m = |(a, b)|, n = |(c, d)|.
            const double m = std::sqrt(a * a + b * b), nn = std::sqrt(c * c + d * d);
            out.components.push_back({child, m * (std::abs(a) + std::abs(c)), nn * (std::abs(b) + std::abs(d)),
                                      std::max(m * std::abs(dx), nn * std::abs(dy))});
            more = flags & 32;
        }
    }

    // Expands a composite glyph as stb_truetype will: every component's points, transformed.
    void expand(uint32_t g, int depth) {
        Glyph& gl = glyphs_[g];
        if (gl.state == 2) return;
        if (gl.state == 1) bad("composite glyph ", g, " contains itself");
        if (depth > kMaxComponentDepth) bad("glyph ", g, ": composite glyphs nest deeper than ", kMaxComponentDepth);
        gl.state = 1;
        uint64_t points = 0;
        double bound = 0;
        for (const Component& c : gl.components) {
            if (c.glyph >= num_glyphs_) continue;  // stb_truetype skips it
            Glyph& child = glyphs_[c.glyph];
            if (child.composite) expand(c.glyph, depth + 1);
            points += child.points;
            bound = std::max(bound, std::max(c.scale_x, c.scale_y) * child.bound + c.shift);
            if (points > kMaxGlyphPoints) bad("composite glyph ", g, " expands to more than ", kMaxGlyphPoints, " points");
        }
        if (bound >= 32767.5) bad("composite glyph ", g, ": transformed points leave the 16-bit range");
        gl.points = points;
        gl.bound = bound;
        gl.state = 2;
    }

    // The subtable stb_truetype selects: the last Unicode one (platform 0, or 3 with encoding 1 or 10).
    void check_cmap(const Table& cmap) {
        at_least(cmap, 4, "cmap");
        const uint16_t records = u16(cmap.off + 2, "cmap");
        inside(cmap, cmap.off + 4, 8ull * records, "cmap");
        uint64_t sub = 0;
        bool found = false;
        for (uint32_t i = 0; i < records; ++i) {
            const uint64_t rec = cmap.off + 4 + 8ull * i;
            const uint16_t platform = u16(rec, "cmap"), encoding = u16(rec + 2, "cmap");
            if (platform == 0 || (platform == 3 && (encoding == 1 || encoding == 10)))
                sub = cmap.off + u32(rec + 4, "cmap"), found = true;
        }
        if (!found) bad("its cmap has no Unicode subtable");
        inside(cmap, sub, 2, "cmap");
        const Table s{sub, cmap.off + cmap.len - sub, true};  // the subtable may run to the table's end
        switch (const uint16_t format = u16(sub, "cmap")) {
        case 0:
            inside(s, sub, 6, "cmap"), inside(s, sub, u16(sub + 2, "cmap"), "cmap");
            return;
        case 6:
            inside(s, sub, 10, "cmap"), inside(s, sub + 10, 2ull * u16(sub + 8, "cmap"), "cmap");
            return;
        case 12:
        case 13:
            inside(s, sub, 16, "cmap"), inside(s, sub + 16, 12ull * u32(sub + 12, "cmap"), "cmap");
            return;
        case 4:
            return check_cmap4(s);
        default:
            bad("its Unicode cmap subtable has format ", format, " (0, 4, 6, 12 and 13 are supported)");
        }
    }

    // Format 4: stb_truetype's binary search trusts searchRange, entrySelector and rangeShift, and
    // idRangeOffset points anywhere; all must be what the segment count implies and inside the table.
    void check_cmap4(const Table& s) {
        inside(s, s.off, 14, "cmap");
        const uint16_t seg_x2 = u16(s.off + 6, "cmap");
        if (seg_x2 < 2 || seg_x2 % 2) bad("cmap format 4: segCountX2 is ", seg_x2);
        const uint32_t segs = seg_x2 / 2u;
        uint32_t pow = 1, log = 0;
        while (pow * 2 <= segs) pow *= 2, ++log;
        if (u16(s.off + 8, "cmap") != 2 * pow || u16(s.off + 10, "cmap") != log ||
            u16(s.off + 12, "cmap") != 2 * segs - 2 * pow)
            bad("cmap format 4: searchRange, entrySelector or rangeShift disagree with the ", segs, " segments");
        inside(s, s.off + 14, 8ull * segs + 2, "cmap");
        const uint64_t ends = s.off + 14, starts = ends + 2ull * segs + 2, ranges = starts + 4ull * segs;
        for (uint32_t i = 0; i < segs; ++i) {
            const uint16_t end = u16(ends + 2ull * i, "cmap"), start = u16(starts + 2ull * i, "cmap");
            if (i > 0 && end < u16(ends + 2ull * (i - 1), "cmap")) bad("cmap format 4: segments are not sorted");
            const uint16_t range = u16(ranges + 2ull * i, "cmap");
            if (range != 0 && start <= end)
                inside(s, ranges + 2ull * i + range, 2ull * (end - start) + 2, "cmap (idRangeOffset)");
        }
    }

    void check_kern(const Table& kern) {  // stb_truetype reads the first subtable when it is horizontal
        at_least(kern, 4, "kern");
        if (u16(kern.off + 2, "kern") < 1) return;
        at_least(kern, 12, "kern");
        if (u16(kern.off + 8, "kern") != 1) return;
        at_least(kern, 18 + 6ull * u16(kern.off + 10, "kern"), "kern");
    }

    // GPOS pair adjustment (lookup type 2), everything stb_truetype reads for any pair of glyphs.
    void check_gpos(const Table& gpos) {
        at_least(gpos, 4, "GPOS");
        if (u16(gpos.off, "GPOS") != 1 || u16(gpos.off + 2, "GPOS") != 0) return;  // stb: version 1.0 only
        at_least(gpos, 10, "GPOS");
        const uint64_t list = gpos.off + u16(gpos.off + 8, "GPOS");
        inside(gpos, list, 2, "GPOS");
        const uint16_t lookups = u16(list, "GPOS");
        inside(gpos, list + 2, 2ull * lookups, "GPOS");
        for (uint32_t i = 0; i < lookups; ++i) {
            const uint64_t lookup = list + u16(list + 2 + 2ull * i, "GPOS");
            inside(gpos, lookup, 6, "GPOS");
            if (u16(lookup, "GPOS") != 2) continue;
            const uint16_t subtables = u16(lookup + 4, "GPOS");
            inside(gpos, lookup + 6, 2ull * subtables, "GPOS");
            for (uint32_t j = 0; j < subtables; ++j)
                check_pair_adjustment(gpos, lookup + u16(lookup + 6 + 2ull * j, "GPOS"));
        }
    }

    void check_pair_adjustment(const Table& gpos, uint64_t st) {
        inside(gpos, st, 4, "GPOS");
        const int64_t max_index = coverage_max_index(gpos, st + u16(st + 2, "GPOS"));
        if (max_index < 0) return;  // no glyph is covered: stb_truetype reads no further
        const uint16_t format = u16(st, "GPOS");
        if (format != 1 && format != 2) return;  // stb_truetype: unsupported, no kerning
        inside(gpos, st, 8, "GPOS");
        if (u16(st + 4, "GPOS") != 4 || u16(st + 6, "GPOS") != 0) return;  // stb: xAdvance of the first only
        if (format == 1) {
            inside(gpos, st, 10, "GPOS");
            const uint16_t sets = u16(st + 8, "GPOS");
            // Read before stb_truetype compares the coverage index with the pair-set count.
            inside(gpos, st + 10, 2ull * (max_index + 1), "GPOS");
            for (int64_t k = 0; k <= max_index; ++k) {
                const uint64_t set = st + u16(st + 10 + 2ull * k, "GPOS");
                inside(gpos, set, 2, "GPOS");
                if (k < sets) inside(gpos, set + 2, 4ull * u16(set, "GPOS"), "GPOS");
            }
        } else {
            inside(gpos, st, 16, "GPOS");
            check_class_def(gpos, st + u16(st + 8, "GPOS"));
            check_class_def(gpos, st + u16(st + 10, "GPOS"));
            inside(gpos, st + 16, 2ull * u16(st + 12, "GPOS") * u16(st + 14, "GPOS"), "GPOS");
        }
    }

    // The largest index a coverage table can return (-1: none, or a format stb_truetype ignores).
    int64_t coverage_max_index(const Table& gpos, uint64_t cov) const {
        inside(gpos, cov, 2, "GPOS coverage");
        const uint16_t format = u16(cov, "GPOS");
        if (format != 1 && format != 2) return -1;
        inside(gpos, cov, 4, "GPOS coverage");
        const uint16_t count = u16(cov + 2, "GPOS");
        if (format == 1) return inside(gpos, cov + 4, 2ull * count, "GPOS coverage"), int64_t(count) - 1;
        inside(gpos, cov + 4, 6ull * count, "GPOS coverage");
        int64_t max_index = -1;
        for (uint32_t r = 0; r < count; ++r) {
            const uint64_t rec = cov + 4 + 6ull * r;
            const uint16_t first = u16(rec, "GPOS"), last = u16(rec + 2, "GPOS");
            if (first <= last) max_index = std::max<int64_t>(max_index, u16(rec + 4, "GPOS") + int64_t(last - first));
        }
        return max_index;
    }

    void check_class_def(const Table& gpos, uint64_t cd) const {
        inside(gpos, cd, 2, "GPOS class definition");
        const uint16_t format = u16(cd, "GPOS");
        if (format == 1)
            inside(gpos, cd, 6, "GPOS class definition"), inside(gpos, cd + 6, 2ull * u16(cd + 4, "GPOS"), "GPOS");
        else if (format == 2)
            inside(gpos, cd, 4, "GPOS class definition"), inside(gpos, cd + 4, 6ull * u16(cd + 2, "GPOS"), "GPOS");
    }

    std::span<const unsigned char> f_;
    std::string name_;
    uint64_t dir_ = 0;
    uint32_t n_tables_ = 0;
    uint32_t num_glyphs_ = 0;
    std::vector<Glyph> glyphs_;
};

// Checks `file` (a TrueType font or collection named `name`) for stb_truetype; returns maxp.numGlyphs.
inline uint32_t check_truetype(std::span<const unsigned char> file, const std::string& name) {
    TrueTypeCheck check(file, name);
    check.run();
    return check.num_glyphs();
}

}  // namespace pix2struct::detail
