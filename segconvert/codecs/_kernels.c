/* Fused per-pixel kernels for segconvert (optional: segconvert.codecs.lut falls back to numpy).
 *
 * Both kernels read an RGB byte image, make key = R | G << 8 | B << 16 per pixel (COCO
 * panoptic's id, or a colour), write one code byte per pixel and count the codes -- one
 * pass over the pixels instead of numpy's four (RGB -> RGBA, mask to 24 bits, take,
 * histogram).
 *
 * rgb_lookup(rgb, table, out, hist, offset): code = table[key] + offset (mod 256), with
 *   a 2^24-entry table. For tables made once per run (a colormap: rgb reader).
 * rgb_codes(rgb, codes, out, hist, unknown): code = codes[key] for a dict {id: code},
 *   else `unknown`. For the few dozen ids of one image (COCO panoptic): the pairs go in
 *   a small hash table that stays in L1, where writing and clearing them in a 16 MB
 *   table cost a page fault per new page and a TLB miss per lookup; taking the dict
 *   itself saves the numpy calls that would turn it into arrays (0.03 ms per image).
 *
 * Label maps are runs, so both work run by run where they can (see RUN_KERNEL).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__unix__) || defined(__APPLE__)
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#define HAVE_POSIX_FILES 1
#endif

#define KEY_AT(p) ((uint32_t)(p)[0] | (uint32_t)(p)[1] << 8 | (uint32_t)(p)[2] << 16)

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Two ways through a stretch [i0, i1) of pixels, both given LOOKUP(key) -> code:
 *
 * SCAN_STRETCH finds where each run of equal pixels ends (pixel j differs from pixel j-1
 * iff one of its bytes differs from the byte 3 before it: 16 bytes per SSE2 compare,
 * 8 without SSE2), then does one lookup, one memset and one histogram add per run.
 * Label maps are runs (make_dataset's panoptic PNGs: 54 pixels on average), so this
 * is the fast way: 0.12 ms per 640x480 image. Counts the runs into `runs`.
 *
 * GROUP_STRETCH takes 8 pixels (24 bytes) at a time: a group equal to the previous
 * group has its codes, else 8 lookups. 0.16 ms on the same images, but 0.6 ms instead
 * of the scan's 1.7 on noise (a run per pixel), so it takes over where runs are short.
 * Four sub-histograms break the store-to-load chain when neighbouring codes are equal;
 * the 64-bit loads read R, G, B as the low bytes on little-endian machines only
 * (elsewhere the scan does everything). */
#if defined(__SSE2__)
#define SCAN_STEP(found)                                                           \
    if (b + 16 <= nb) {                                                            \
        __m128i x_ = _mm_loadu_si128((const __m128i *)(p + b));                    \
        __m128i y_ = _mm_loadu_si128((const __m128i *)(p + b - 3));                \
        unsigned m_ = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x_, y_)) ^ 0xFFFFu; \
        if (m_ == 0) { b += 16; continue; }                                        \
        found = b + __builtin_ctz(m_);                                             \
        break;                                                                     \
    }
#else
#define SCAN_STEP(found)                                                           \
    if (b + 8 <= nb) {                                                             \
        uint64_t x_, y_;                                                           \
        memcpy(&x_, p + b, 8);                                                     \
        memcpy(&y_, p + b - 3, 8);                                                 \
        if (x_ == y_) { b += 8; continue; }                                        \
        while (p[b] == p[b - 3]) b++;                                              \
        found = b;                                                                 \
        break;                                                                     \
    }
#endif

#define SCAN_STRETCH(LOOKUP, i0, i1, runs)                                         \
    do {                                                                           \
        const Py_ssize_t nb = 3 * (i1);                                            \
        Py_ssize_t i = (i0);                                                       \
        while (i < (i1)) {                                                         \
            const uint8_t c0 = LOOKUP(KEY_AT(p + 3 * i));                          \
            Py_ssize_t b = 3 * i + 3, found = nb; /* first byte not known to repeat */ \
            for (;;) {                                                             \
                SCAN_STEP(found)                                                   \
                while (b < nb && p[b] == p[b - 3]) b++;                            \
                found = b;                                                         \
                break;                                                             \
            }                                                                      \
            Py_ssize_t j = found / 3;                                              \
            memset(o + i, c0, (size_t)(j - i));                                    \
            h[c0] += j - i;                                                        \
            i = j;                                                                 \
            (runs)++;                                                              \
        }                                                                          \
    } while (0)

#if !(defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__)
#define HAVE_GROUPS 1
#define GROUP_STRETCH(LOOKUP, i0, i1)                                              \
    do {                                                                           \
        const uint8_t *g = p + 3 * (i0);                                           \
        uint64_t pq0 = 0, pq1 = 0, pq2 = 0;                                        \
        uint32_t run = 0;                                                          \
        uint8_t c[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                   \
        Py_ssize_t i = (i0);                                                       \
        for (; i + 8 <= (i1); i += 8, g += 24) {                                   \
            uint64_t q0, q1, q2;                                                   \
            memcpy(&q0, g, 8);                                                     \
            memcpy(&q1, g + 8, 8);                                                 \
            memcpy(&q2, g + 16, 8);                                                \
            if (run && q0 == pq0 && q1 == pq1 && q2 == pq2) {                      \
                memcpy(o + i, c, 8);                                               \
                run++;                                                             \
                continue;                                                          \
            }                                                                      \
            for (int k = 0; k < 8; k++) part[k & 3][c[k]] += run;                  \
            c[0] = LOOKUP((uint32_t)(q0 & 0xFFFFFF));                              \
            c[1] = LOOKUP((uint32_t)((q0 >> 24) & 0xFFFFFF));                      \
            c[2] = LOOKUP((uint32_t)((q0 >> 48) | ((q1 & 0xFF) << 16)));           \
            c[3] = LOOKUP((uint32_t)((q1 >> 8) & 0xFFFFFF));                       \
            c[4] = LOOKUP((uint32_t)((q1 >> 32) & 0xFFFFFF));                      \
            c[5] = LOOKUP((uint32_t)((q1 >> 56) | ((q2 & 0xFFFF) << 8)));          \
            c[6] = LOOKUP((uint32_t)((q2 >> 16) & 0xFFFFFF));                      \
            c[7] = LOOKUP((uint32_t)(q2 >> 40));                                   \
            memcpy(o + i, c, 8);                                                   \
            pq0 = q0; pq1 = q1; pq2 = q2;                                          \
            run = 1;                                                               \
        }                                                                          \
        for (int k = 0; k < 8; k++) part[k & 3][c[k]] += run;                      \
        for (; i < (i1); i++, g += 3) {                                            \
            uint8_t c1 = LOOKUP(KEY_AT(g));                                        \
            o[i] = c1;                                                             \
            part[0][c1]++;                                                         \
        }                                                                          \
    } while (0)
#else
#define HAVE_GROUPS 0
#define GROUP_STRETCH(LOOKUP, i0, i1) do { } while (0)
#endif

/* The image in stretches of STRETCH pixels: the scan, unless the last scanned stretch
 * had runs shorter than SHORT_RUN pixels on average; then groups, with a scan again
 * every RETRY stretches to notice when runs come back. Worst case (noise) ~0.7 ms. */
#define STRETCH 4096
#define SHORT_RUN 8
#define RETRY 8
#define RUN_KERNEL(LOOKUP)                                                         \
    do {                                                                           \
        uint32_t part[4][256];                                                     \
        memset(part, 0, sizeof(part));                                             \
        int use_groups = 0, since_scan = 0;                                        \
        for (Py_ssize_t s0 = 0; s0 < n; s0 += STRETCH) {                           \
            Py_ssize_t s1 = s0 + STRETCH < n ? s0 + STRETCH : n;                   \
            if (HAVE_GROUPS && use_groups && ++since_scan < RETRY) {               \
                GROUP_STRETCH(LOOKUP, s0, s1);                                     \
                continue;                                                          \
            }                                                                      \
            Py_ssize_t runs = 0;                                                   \
            SCAN_STRETCH(LOOKUP, s0, s1, runs);                                    \
            use_groups = runs * SHORT_RUN > s1 - s0;                               \
            since_scan = 0;                                                        \
        }                                                                          \
        for (int k = 0; k < 256; k++)                                              \
            h[k] += (int64_t)part[0][k] + part[1][k] + part[2][k] + part[3][k];    \
    } while (0)

/* Checks shared by both kernels; sets a Python error and returns 0 when one fails. */
static int check_image(Py_buffer *rgb, Py_buffer *out, Py_buffer *hist) {
    if (rgb->len != 3 * out->len) {
        PyErr_SetString(PyExc_ValueError, "rgb must hold 3 bytes per output pixel");
        return 0;
    }
    if (out->len >= ((Py_ssize_t)1 << 34)) { /* each 32-bit sub-histogram sees n/4 pixels */
        PyErr_SetString(PyExc_ValueError, "image too large for one kernel call");
        return 0;
    }
    if (hist->len != 256 * (Py_ssize_t)sizeof(int64_t)) {
        PyErr_SetString(PyExc_ValueError, "hist must be 256 int64 counters");
        return 0;
    }
    return 1;
}

static PyObject *rgb_lookup(PyObject *self, PyObject *args) {
    Py_buffer rgb, table, out, hist;
    unsigned char offset = 0;
    if (!PyArg_ParseTuple(args, "y*y*w*w*|b", &rgb, &table, &out, &hist, &offset))
        return NULL;
    PyObject *result = NULL;
    if (!check_image(&rgb, &out, &hist)) {
        /* error set */
    } else if (table.len != ((Py_ssize_t)1 << 24)) {
        PyErr_SetString(PyExc_ValueError, "table must have 2**24 one-byte entries");
    } else {
        const uint8_t *p = (const uint8_t *)rgb.buf;
        const uint8_t *t = (const uint8_t *)table.buf;
        uint8_t *o = (uint8_t *)out.buf;
        int64_t *h = (int64_t *)hist.buf;
        Py_ssize_t n = out.len;
        Py_BEGIN_ALLOW_THREADS
#define TABLE_LOOKUP(key) ((uint8_t)(t[(key)] + offset))
        RUN_KERNEL(TABLE_LOOKUP);
#undef TABLE_LOOKUP
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&rgb);
    PyBuffer_Release(&table);
    PyBuffer_Release(&out);
    PyBuffer_Release(&hist);
    return result;
}

/* Open addressing with linear probing; EMPTY is no 24-bit key. */
#define EMPTY 0xFFFFFFFFu

static inline uint8_t hash_find(const uint32_t *hk, const uint8_t *hv, uint32_t mask, int shift, uint32_t key,
                                uint8_t unknown) {
    uint32_t j = (uint32_t)(key * 0x9E3779B1u) >> shift;
    for (;;) {
        uint32_t k = hk[j];
        if (k == key) return hv[j];
        if (k == EMPTY) return unknown;
        j = (j + 1) & mask;
    }
}

static inline uint8_t cached_find(const uint32_t *hk, const uint8_t *hv, uint32_t mask, int shift, uint32_t key,
                                  uint8_t unknown, uint32_t *last_key, uint8_t *last_code) {
    if (key != *last_key) {
        *last_key = key;
        *last_code = hash_find(hk, hv, mask, shift, key, unknown);
    }
    return *last_code;
}

static PyObject *rgb_codes(PyObject *self, PyObject *args) {
    Py_buffer rgb, out, hist;
    PyObject *codes;
    unsigned char unknown = 255;
    if (!PyArg_ParseTuple(args, "y*O!w*w*|b", &rgb, &PyDict_Type, &codes, &out, &hist, &unknown))
        return NULL;
    PyObject *result = NULL;
    uint32_t *hk = NULL;
    Py_ssize_t m = PyDict_Size(codes);
    if (!check_image(&rgb, &out, &hist))
        goto done;
    int bits = 4; /* table size 2^bits >= 2m: at most half full, short probes */
    while (((Py_ssize_t)1 << bits) < 2 * m) bits++;
    if (bits > 26) {
        PyErr_SetString(PyExc_ValueError, "too many ids for one image");
        goto done;
    }
    uint32_t size = (uint32_t)1 << bits, mask = size - 1;
    int shift = 32 - bits;
    hk = (uint32_t *)malloc(size * (sizeof(uint32_t) + 1));
    if (hk == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    uint8_t *hv = (uint8_t *)(hk + size);
    memset(hk, 0xFF, size * sizeof(uint32_t));
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(codes, &pos, &k, &v)) {
        int overflow = 0;
        long long key = PyLong_AsLongLongAndOverflow(k, &overflow);
        if (key == -1 && PyErr_Occurred()) goto done;
        if (overflow || key < 0 || key > 0xFFFFFF) continue; /* not a 24-bit id: no pixel can have it */
        long code = PyLong_AsLong(v);
        if (code == -1 && PyErr_Occurred()) goto done;
        if (code < 0 || code > 255) {
            PyErr_SetString(PyExc_ValueError, "codes must be 0..255");
            goto done;
        }
        uint32_t s = (uint32_t)((uint32_t)key * 0x9E3779B1u) >> shift;
        while (hk[s] != EMPTY && hk[s] != (uint32_t)key) s = (s + 1) & mask;
        hk[s] = (uint32_t)key;
        hv[s] = (uint8_t)code;
    }
    {
        const uint8_t *p = (const uint8_t *)rgb.buf;
        uint8_t *o = (uint8_t *)out.buf;
        int64_t *h = (int64_t *)hist.buf;
        Py_ssize_t n = out.len;
        Py_BEGIN_ALLOW_THREADS
        /* neighbours mostly share an id: the last key found is tried first */
        uint32_t last_key = EMPTY;
        uint8_t last_code = unknown;
#define HASH_LOOKUP(key) cached_find(hk, hv, mask, shift, (key), unknown, &last_key, &last_code)
        RUN_KERNEL(HASH_LOOKUP);
#undef HASH_LOOKUP
        Py_END_ALLOW_THREADS
    }
    result = Py_None;
    Py_INCREF(result);
done:
    free(hk);
    PyBuffer_Release(&rgb);
    PyBuffer_Release(&out);
    PyBuffer_Release(&hist);
    return result;
}

/* The end of the run of byte p[i] in p[0..n): 16 bytes per SSE2 compare, then 8 per compare of
 * a word against the byte repeated, where label maps have runs of tens of pixels (the 16-byte
 * step takes ~40% fewer instructions than 8-byte words alone on the benchmark's masks, whose
 * runs average ~37 pixels; the lookup, the histogram and the unfilter's counts all go through
 * here). */
static inline Py_ssize_t byte_run_end(const uint8_t *p, Py_ssize_t i, Py_ssize_t n) {
    uint8_t v = p[i];
    uint64_t pattern = 0x0101010101010101ull * v;
    Py_ssize_t j = i + 1;
#if defined(__SSE2__) && (defined(__GNUC__) || defined(__clang__))
    const __m128i repeated = _mm_set1_epi8((char)v);
    while (j + 16 <= n) {
        __m128i block = _mm_loadu_si128((const __m128i *)(const void *)(p + j));
        unsigned differ = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(block, repeated)) ^ 0xFFFFu;
        if (differ)
            return j + __builtin_ctz(differ);
        j += 16;
    }
#endif
    while (j + 8 <= n) {
        uint64_t word;
        memcpy(&word, p + j, 8);
        uint64_t diff = word ^ pattern;
        if (diff) {
#if (defined(__GNUC__) || defined(__clang__)) && !(defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__)
            return j + (__builtin_ctzll(diff) >> 3); /* little-endian: the lowest differing byte */
#else
            while (p[j] == v)
                j++;
            return j;
#endif
        }
        j += 8;
    }
    while (j < n && p[j] == v)
        j++;
    return j;
}

/* code_boxes(codes, width, boxes): the bounding box of every code of a uint8 code map, in
 * one pass (writers need a box per segment: COCO's bbox). boxes is 256 x 4 int32, filled by
 * the caller with (width, height, -1, -1) and left with (min x, min y, max x, max y) of each
 * code that occurs. Run by run (byte_run_end): the updates once per run. */
static PyObject *code_boxes(PyObject *self, PyObject *args) {
    Py_buffer codes, boxes;
    Py_ssize_t width;
    if (!PyArg_ParseTuple(args, "y*nw*", &codes, &width, &boxes))
        return NULL;
    PyObject *result = NULL;
    if (width <= 0 || codes.len % width != 0) {
        PyErr_SetString(PyExc_ValueError, "codes must hold whole rows of `width` bytes");
    } else if (boxes.len != 256 * 4 * (Py_ssize_t)sizeof(int32_t)) {
        PyErr_SetString(PyExc_ValueError, "boxes must be 256 x 4 int32");
    } else if (width >= ((Py_ssize_t)1 << 31) || codes.len / width >= ((Py_ssize_t)1 << 31)) {
        PyErr_SetString(PyExc_ValueError, "image too large for int32 boxes");
    } else {
        const uint8_t *c = (const uint8_t *)codes.buf;
        int32_t *b = (int32_t *)boxes.buf;
        Py_ssize_t rows = codes.len / width;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t y = 0; y < rows; y++) {
            const uint8_t *row = c + y * width;
            Py_ssize_t x = 0;
            while (x < width) {
                uint8_t v = row[x];
                Py_ssize_t end = byte_run_end(row, x, width);
                int32_t *box = b + 4 * v;
                if (x < box[0]) box[0] = (int32_t)x;
                if (end - 1 > box[2]) box[2] = (int32_t)(end - 1);
                if (box[3] != (int32_t)y) { /* first run of v in this row */
                    if (box[3] < 0) box[1] = (int32_t)y;
                    box[3] = (int32_t)y;
                }
                x = end;
            }
        }
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&codes);
    PyBuffer_Release(&boxes);
    return result;
}

/* u8_histogram(values, hist): hist[v] += 1 for every byte of values, run by run (byte_run_end):
 * one add per run, ~0.1 ms for 640x480 where cv2.calcHist takes 0.35. */
static PyObject *u8_histogram(PyObject *self, PyObject *args) {
    Py_buffer values, hist;
    if (!PyArg_ParseTuple(args, "y*w*", &values, &hist))
        return NULL;
    PyObject *result = NULL;
    if (hist.len != 256 * (Py_ssize_t)sizeof(int64_t)) {
        PyErr_SetString(PyExc_ValueError, "hist must be 256 int64 counters");
    } else {
        const uint8_t *p = (const uint8_t *)values.buf;
        int64_t *h = (int64_t *)hist.buf;
        Py_ssize_t n = values.len, i = 0;
        Py_BEGIN_ALLOW_THREADS
        while (i < n) {
            Py_ssize_t j = byte_run_end(p, i, n);
            h[p[i]] += j - i;
            i = j;
        }
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&values);
    PyBuffer_Release(&hist);
    return result;
}

/* code_colors(codes, table, out): out pixel i = table[codes[i]] (3 bytes each; table: 256 x 3),
 * one overlapping 4-byte store per pixel: writers turn a uint8 code map into COCO panoptic ids or
 * colour masks with it in ~0.2 ms for 640x480, where cvtColor + a 3-channel cv2.LUT cost ~0.7. */
static PyObject *code_colors(PyObject *self, PyObject *args) {
    Py_buffer codes, table, out;
    if (!PyArg_ParseTuple(args, "y*y*w*", &codes, &table, &out))
        return NULL;
    PyObject *result = NULL;
    if (table.len != 256 * 3) {
        PyErr_SetString(PyExc_ValueError, "table must be 256 x 3 bytes");
    } else if (out.len != 3 * codes.len) {
        PyErr_SetString(PyExc_ValueError, "out must hold 3 bytes per code");
    } else {
        const uint8_t *c = (const uint8_t *)codes.buf;
        const uint8_t *t = (const uint8_t *)table.buf;
        uint8_t *o = (uint8_t *)out.buf;
        Py_ssize_t n = codes.len;
        uint32_t t4[256]; /* each colour as 4 bytes: one overlapping 4-byte store per pixel */
        for (int k = 0; k < 256; k++)
            t4[k] = (uint32_t)t[3 * k] | (uint32_t)t[3 * k + 1] << 8 | (uint32_t)t[3 * k + 2] << 16;
        Py_BEGIN_ALLOW_THREADS
        Py_ssize_t i = 0;
        for (; i + 1 < n; i++) { /* the 4th byte is overwritten by the next pixel */
            uint32_t rgb = t4[c[i]];
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
            o[3 * i] = (uint8_t)rgb; o[3 * i + 1] = (uint8_t)(rgb >> 8); o[3 * i + 2] = (uint8_t)(rgb >> 16);
#else
            memcpy(o + 3 * i, &rgb, 4);
#endif
        }
        if (i < n) { /* the last pixel: exactly 3 bytes */
            const uint8_t *rgb = t + 3 * c[i];
            o[3 * i] = rgb[0]; o[3 * i + 1] = rgb[1]; o[3 * i + 2] = rgb[2];
        }
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&codes);
    PyBuffer_Release(&table);
    PyBuffer_Release(&out);
    return result;
}

/* u8_lookup(values, table, out, width=0): out[i] = table[values[i]] (table: 256 bytes), run by
 * run with memset: ~0.05 ms for a 640x480 label map, and no OpenCV import (cv2.LUT's only use in
 * a writer's process would cost ~15 MB of RSS and its start-up). With a `width`, out is the
 * rows of a PNG's IDAT instead: each row of `width` values written after a filter-type byte 0
 * (rows x (width + 1) bytes), so that the encoder deflates it as it is (no copy into the rows). */
static PyObject *u8_lookup(PyObject *self, PyObject *args) {
    Py_buffer values, table, out;
    Py_ssize_t width = 0;
    if (!PyArg_ParseTuple(args, "y*y*w*|n", &values, &table, &out, &width))
        return NULL;
    PyObject *result = NULL;
    if (table.len != 256) {
        PyErr_SetString(PyExc_ValueError, "table must be 256 bytes");
    } else if (width < 0 || (width > 0 && values.len % width != 0)) {
        PyErr_SetString(PyExc_ValueError, "values must hold whole rows of `width` bytes");
    } else if (out.len != values.len + (width > 0 ? values.len / width : 0)) {
        PyErr_SetString(PyExc_ValueError, width > 0 ? "out must hold (1 + width) bytes per row"
                                                    : "out must be as long as values");
    } else {
        const uint8_t *p = (const uint8_t *)values.buf;
        const uint8_t *t = (const uint8_t *)table.buf;
        uint8_t *o = (uint8_t *)out.buf;
        Py_ssize_t n = values.len;
        Py_ssize_t row = width > 0 ? width : n; /* runs end at row ends when rows are padded */
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t start = 0; start < n; start += row) {
            const uint8_t *src = p + start;
            uint8_t *dst = o + start + (width > 0 ? start / width + 1 : 0);
            if (width > 0)
                dst[-1] = 0; /* filter type None */
            Py_ssize_t i = 0;
            while (i < row) {
                Py_ssize_t j = byte_run_end(src, i, row);
                memset(dst + i, t[src[i]], (size_t)(j - i));
                i = j;
            }
        }
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&values);
    PyBuffer_Release(&table);
    PyBuffer_Release(&out);
    return result;
}

/* png_unfilter8(raw, width, out, hist): undo the PNG row filters of a non-interlaced image of
 * one byte per pixel (8-bit palette or grayscale: VOC's masks), raw being the inflated IDAT
 * stream (each row a filter-type byte + `width` bytes), and count the pixel values, the row
 * still in cache, run by run. Palette PNGs decoded to their indices without Pillow's
 * per-image object overhead or libspng's RGB expansion. ValueError on a filter type > 4. */
static inline uint8_t paeth(int a, int b, int c) {
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return (uint8_t)((pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c));
}

/* One row of an inflated 1-byte-per-pixel PNG unfiltered: src is the row's bytes after its
 * filter-type byte (src[-1]), prev the row above (NULL for the first). -1 for a filter type > 4. */
static inline int unfilter_row(const uint8_t *src, uint8_t *row, const uint8_t *prev, Py_ssize_t width) {
    Py_ssize_t x;
    switch (src[-1]) {
    case 0:
        memcpy(row, src, (size_t)width);
        return 0;
    case 1:
        row[0] = src[0];
        for (x = 1; x < width; x++) row[x] = (uint8_t)(src[x] + row[x - 1]);
        return 0;
    case 2:
        if (prev)
            for (x = 0; x < width; x++) row[x] = (uint8_t)(src[x] + prev[x]);
        else
            memcpy(row, src, (size_t)width);
        return 0;
    case 3:
        row[0] = (uint8_t)(src[0] + (prev ? prev[0] >> 1 : 0));
        for (x = 1; x < width; x++)
            row[x] = (uint8_t)(src[x] + ((row[x - 1] + (prev ? prev[x] : 0)) >> 1));
        return 0;
    case 4:
        if (prev) {
            row[0] = (uint8_t)(src[0] + prev[0]); /* paeth(0, b, 0) = b */
            for (x = 1; x < width; x++) row[x] = (uint8_t)(src[x] + paeth(row[x - 1], prev[x], prev[x - 1]));
        } else { /* paeth(a, 0, 0) = a: as Sub */
            row[0] = src[0];
            for (x = 1; x < width; x++) row[x] = (uint8_t)(src[x] + row[x - 1]);
        }
        return 0;
    default:
        return -1;
    }
}

static PyObject *png_unfilter8(PyObject *self, PyObject *args) {
    Py_buffer raw, out, hist;
    Py_ssize_t width;
    if (!PyArg_ParseTuple(args, "y*nw*w*", &raw, &width, &out, &hist))
        return NULL;
    PyObject *result = NULL;
    if (width <= 0 || out.len % width != 0 || raw.len != out.len + out.len / width) {
        PyErr_SetString(PyExc_ValueError, "raw must hold (1 + width) bytes per row of out");
    } else if (hist.len != 256 * (Py_ssize_t)sizeof(int64_t)) {
        PyErr_SetString(PyExc_ValueError, "hist must be 256 int64 counters");
    } else {
        const uint8_t *r = (const uint8_t *)raw.buf;
        uint8_t *o = (uint8_t *)out.buf;
        int64_t *h = (int64_t *)hist.buf;
        Py_ssize_t rows = out.len / width, bad_row = -1;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t y = 0; y < rows; y++) {
            uint8_t *row = o + y * width;
            if (unfilter_row(r + y * (width + 1) + 1, row, y ? row - width : NULL, width) < 0) {
                bad_row = y;
                break;
            }
            Py_ssize_t x = 0;
            while (x < width) {
                Py_ssize_t e = byte_run_end(row, x, width);
                h[row[x]] += e - x;
                x = e;
            }
        }
        Py_END_ALLOW_THREADS
        if (bad_row >= 0) {
            PyErr_Format(PyExc_ValueError, "row %zd has PNG filter type %d (0..4 exist)", bad_row,
                         (int)r[bad_row * (width + 1)]);
        } else {
            result = Py_None;
            Py_INCREF(result);
        }
    }
    PyBuffer_Release(&raw);
    PyBuffer_Release(&out);
    PyBuffer_Release(&hist);
    return result;
}

/* u8_pair_counts(a, b, hist, keys): hist[a[i] << 8 | b[i]] += 1 (hist: 65536 int64, zero on entry),
 * and the pairs that occur, in order of first occurrence, into keys (65536 uint16); returns how
 * many. Run by run over the stretches where neither map changes (each map's run end found
 * once per run of that map): the joint histogram of VOC's object and class maps in ~0.05 ms
 * for 640x480, where cv2.calcHist's 2-D float histogram and its nonzero took ~1.5. The caller
 * reads the counts at keys and zeroes them again, so one hist serves every image. */
static PyObject *u8_pair_counts(PyObject *self, PyObject *args) {
    Py_buffer a, b, hist, keys;
    if (!PyArg_ParseTuple(args, "y*y*w*w*", &a, &b, &hist, &keys))
        return NULL;
    PyObject *result = NULL;
    if (a.len != b.len) {
        PyErr_SetString(PyExc_ValueError, "a and b must be the same length");
    } else if (hist.len != 65536 * (Py_ssize_t)sizeof(int64_t) || keys.len != 65536 * (Py_ssize_t)sizeof(uint16_t)) {
        PyErr_SetString(PyExc_ValueError, "hist must be 65536 int64 counters, keys 65536 uint16");
    } else {
        const uint8_t *p = (const uint8_t *)a.buf, *q = (const uint8_t *)b.buf;
        int64_t *h = (int64_t *)hist.buf;
        uint16_t *k = (uint16_t *)keys.buf;
        Py_ssize_t n = a.len, i = 0, ea = 0, eb = 0, found = 0;
        Py_BEGIN_ALLOW_THREADS
        while (i < n) {
            if (ea <= i) ea = byte_run_end(p, i, n);
            if (eb <= i) eb = byte_run_end(q, i, n);
            Py_ssize_t j = ea < eb ? ea : eb;
            uint16_t key = (uint16_t)((uint32_t)p[i] << 8 | q[i]);
            if (h[key] == 0) k[found++] = key;
            h[key] += j - i;
            i = j;
        }
        Py_END_ALLOW_THREADS
        result = PyLong_FromSsize_t(found);
    }
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    PyBuffer_Release(&hist);
    PyBuffer_Release(&keys);
    return result;
}

/* u8_overlay(base, table, top, out): out[i] = top[i] if top[i] else table[base[i]] (table: 256
 * bytes): VOC's objects over the stuff values of their class map, one pass run by run. */
static PyObject *u8_overlay(PyObject *self, PyObject *args) {
    Py_buffer base, table, top, out;
    if (!PyArg_ParseTuple(args, "y*y*y*w*", &base, &table, &top, &out))
        return NULL;
    PyObject *result = NULL;
    if (table.len != 256) {
        PyErr_SetString(PyExc_ValueError, "table must be 256 bytes");
    } else if (top.len != base.len || out.len != base.len) {
        PyErr_SetString(PyExc_ValueError, "base, top and out must be the same length");
    } else {
        const uint8_t *p = (const uint8_t *)base.buf, *t = (const uint8_t *)table.buf, *q = (const uint8_t *)top.buf;
        uint8_t *o = (uint8_t *)out.buf;
        Py_ssize_t n = base.len, i = 0, ea = 0, eb = 0;
        Py_BEGIN_ALLOW_THREADS
        while (i < n) {
            if (eb <= i) eb = byte_run_end(q, i, n);
            if (q[i]) { /* an object: its run, whatever the class map does under it */
                memset(o + i, q[i], (size_t)(eb - i));
                i = eb;
                continue;
            }
            if (ea <= i) ea = byte_run_end(p, i, n);
            Py_ssize_t j = ea < eb ? ea : eb;
            memset(o + i, t[p[i]], (size_t)(j - i));
            i = j;
        }
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&base);
    PyBuffer_Release(&table);
    PyBuffer_Release(&top);
    PyBuffer_Release(&out);
    return result;
}

/* rle_paint(strings, ids, buf) -> bool: paint COCO compressed RLEs (pycocotools' count strings)
 * into a zeroed column-major label buffer (uint16 or uint32, one element per pixel), shape k's
 * foreground runs set to ids[k], in order (later on top). The strings are decoded on the fly:
 * each count is a little-endian group of 5-bit chunks in characters 48..111, bit 0x20 saying
 * that another follows, bit 0x10 of the last being the sign; counts after the second are stored
 * as the difference to the count two places before. One pass over the characters and one
 * store per painted pixel, where the numpy path builds index arrays per run (~1 ms for an
 * image of 20 polygons). Returns False, leaving buf partly painted, for any string that is not
 * well-formed (a character out of range, a count ending mid-way or longer than 7 characters, a
 * negative count, counts not covering the buffer exactly): the caller then takes the checked
 * path, which names what is wrong. */
static PyObject *rle_paint(PyObject *self, PyObject *args) {
    PyObject *strings, *ids;
    Py_buffer buf;
    if (!PyArg_ParseTuple(args, "O!O!w*", &PyList_Type, &strings, &PyList_Type, &ids, &buf))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = PyList_GET_SIZE(strings);
    int item = (int)buf.itemsize;
    if (PyList_GET_SIZE(ids) != n) {
        PyErr_SetString(PyExc_ValueError, "one id per string");
        goto done;
    }
    if (item != 2 && item != 4) {
        PyErr_SetString(PyExc_ValueError, "buf must be uint16 or uint32");
        goto done;
    }
    Py_ssize_t npix = buf.len / item;
    int ok = 1;
    for (Py_ssize_t s = 0; s < n && ok; s++) {
        PyObject *str = PyList_GET_ITEM(strings, s);
        if (!PyBytes_Check(str)) {
            PyErr_SetString(PyExc_TypeError, "strings must be bytes");
            goto done;
        }
        unsigned long long id = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(ids, s));
        if (PyErr_Occurred()) goto done;
        if (id > (item == 2 ? 0xFFFFull : 0xFFFFFFFFull)) {
            PyErr_SetString(PyExc_ValueError, "id does not fit the buffer's type");
            goto done;
        }
        const uint8_t *c = (const uint8_t *)PyBytes_AS_STRING(str);
        Py_ssize_t len = PyBytes_GET_SIZE(str), i = 0, m = 0;
        long long prev2 = 0, prev1 = 0, pos = 0;
        Py_BEGIN_ALLOW_THREADS
        while (i < len) {
            long long x = 0;
            int k = 0, more = 1, last = 0;
            while (more) {
                if (i >= len || k >= 7) { ok = 0; break; }
                int v = (int)c[i++] - 48;
                if (v < 0 || v > 63) { ok = 0; break; }
                x |= (long long)(v & 0x1f) << (5 * k);
                more = v & 0x20;
                last = v;
                k++;
            }
            if (!ok) break;
            if (last & 0x10) x -= (long long)1 << (5 * k); /* sign of the last chunk */
            if (m > 2) x += prev2;
            if (x < 0 || pos + x > npix) { ok = 0; break; }
            if (m & 1) { /* odd counts are foreground */
                if (item == 2) {
                    uint16_t *o = (uint16_t *)buf.buf + pos;
                    for (long long j = 0; j < x; j++) o[j] = (uint16_t)id;
                } else {
                    uint32_t *o = (uint32_t *)buf.buf + pos;
                    for (long long j = 0; j < x; j++) o[j] = (uint32_t)id;
                }
            }
            pos += x;
            prev2 = prev1;
            prev1 = x;
            m++;
        }
        Py_END_ALLOW_THREADS
        if (ok && pos != npix) ok = 0;
    }
    result = PyBool_FromLong(ok);
done:
    PyBuffer_Release(&buf);
    return result;
}

/* parse_numbers(text, values, rows) -> (n_values, n_rows) or None: the numbers of a YOLO label
 * file, every one in values (float64), and for each line holding any, (line number, how many)
 * in rows (int64 pairs). Lines end at \n, \r or \r\n (as str.splitlines numbers them, for the
 * text this takes), numbers are separated by spaces and tabs. Only plain decimals are taken:
 * [+-]digits[.digits] with at most 15 significant digits and 22 after the point; such a number
 * is m / 10^f with m and 10^f exact doubles, so one IEEE division gives the correctly rounded
 * value, exactly what float() gives. Anything else (exponents, nan, other characters, other
 * line breaks or whitespace, non-ASCII) returns None, and the caller parses with Python, which
 * names what is wrong: this pass only ever agrees with it. ~20x faster than float() per number. */
static const double POW10[23] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                                 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static PyObject *parse_numbers(PyObject *self, PyObject *args) {
    Py_buffer text, values, rows;
    if (!PyArg_ParseTuple(args, "y*w*w*", &text, &values, &rows))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t cap_v = values.len / (Py_ssize_t)sizeof(double), cap_r = rows.len / (2 * (Py_ssize_t)sizeof(int64_t));
    if (cap_v < text.len / 2 + 1 || cap_r < text.len / 2 + 1) {
        PyErr_SetString(PyExc_ValueError, "values and rows must hold len(text) // 2 + 1 entries");
    } else {
        const uint8_t *c = (const uint8_t *)text.buf;
        double *v = (double *)values.buf;
        int64_t *r = (int64_t *)rows.buf;
        Py_ssize_t n = text.len, i = 0, nv = 0, nr = 0, on_line = 0, line = 1;
        int ok = 1;
        Py_BEGIN_ALLOW_THREADS
        while (i < n) {
            uint8_t ch = c[i];
            if (ch == ' ' || ch == '\t') { i++; continue; }
            if (ch == '\n' || ch == '\r') {
                if (on_line) { r[2 * nr] = line; r[2 * nr + 1] = on_line; nr++; on_line = 0; }
                line++;
                i += (ch == '\r' && i + 1 < n && c[i + 1] == '\n') ? 2 : 1;
                continue;
            }
            int neg = 0, digits = 0, frac = 0, point = 0, any_digit = 0;
            uint64_t m = 0;
            if (ch == '+' || ch == '-') { neg = ch == '-'; i++; }
            for (; i < n; i++) {
                ch = c[i];
                if (ch >= '0' && ch <= '9') {
                    any_digit = 1;
                    if (digits || ch != '0') digits++; /* significant digits: leading zeros are not */
                    m = m * 10 + (uint64_t)(ch - '0');
                    frac += point;
                } else if (ch == '.' && !point) {
                    point = 1;
                } else {
                    break;
                }
            }
            /* a plain decimal with a digit, ending at a separator or the end: else Python's turn */
            if (!any_digit || digits > 15 || frac > 22 ||
                (i < n && c[i] != ' ' && c[i] != '\t' && c[i] != '\n' && c[i] != '\r')) {
                ok = 0;
                break;
            }
            double x = (double)m / POW10[frac];
            v[nv++] = neg ? -x : x;
            on_line++;
        }
        if (ok && on_line) { r[2 * nr] = line; r[2 * nr + 1] = on_line; nr++; }
        Py_END_ALLOW_THREADS
        result = ok ? Py_BuildValue("nn", nv, nr) : (Py_INCREF(Py_None), Py_None);
    }
    PyBuffer_Release(&text);
    PyBuffer_Release(&values);
    PyBuffer_Release(&rows);
    return result;
}

/* code_colors_boxes(codes, width, table, out, boxes): code_colors and code_boxes in one pass, run
 * by run (COCO panoptic's writer needs both of every image), the colours written 16 pixels at a time:
 * ~0.1 ms for 640x480 where the two passes take ~0.21. Same arguments and results as the two. */
/* the AVX2 version of its pixel loop, at the end of the file (0 where it cannot run: no AVX2) */
static int colors_boxes_avx2(const uint8_t *c, Py_ssize_t width, Py_ssize_t rows, const uint8_t *t, uint8_t *o,
                             Py_ssize_t end_of_out, int png_rows, int32_t *b);

static PyObject *code_colors_boxes(PyObject *self, PyObject *args) {
    Py_buffer codes, table, out, boxes;
    Py_ssize_t width;
    int png_rows = 0; /* out is a PNG's IDAT rows: a filter-type byte 0 before each row of colours */
    if (!PyArg_ParseTuple(args, "y*ny*w*w*|p", &codes, &width, &table, &out, &boxes, &png_rows))
        return NULL;
    PyObject *result = NULL;
    if (width <= 0 || codes.len % width != 0) {
        PyErr_SetString(PyExc_ValueError, "codes must hold whole rows of `width` bytes");
    } else if (table.len != 256 * 3) {
        PyErr_SetString(PyExc_ValueError, "table must be 256 x 3 bytes");
    } else if (out.len != 3 * codes.len + (png_rows ? codes.len / width : 0)) {
        PyErr_SetString(PyExc_ValueError, png_rows ? "out must hold 1 + 3 x width bytes per row"
                                                   : "out must hold 3 bytes per code");
    } else if (boxes.len != 256 * 4 * (Py_ssize_t)sizeof(int32_t)) {
        PyErr_SetString(PyExc_ValueError, "boxes must be 256 x 4 int32");
    } else if (width >= ((Py_ssize_t)1 << 31) || codes.len / width >= ((Py_ssize_t)1 << 31)) {
        PyErr_SetString(PyExc_ValueError, "image too large for int32 boxes");
    } else {
        const uint8_t *c = (const uint8_t *)codes.buf;
        const uint8_t *t = (const uint8_t *)table.buf;
        uint8_t *o = (uint8_t *)out.buf;
        int32_t *b = (int32_t *)boxes.buf;
        Py_ssize_t rows = codes.len / width, end_of_out = out.len;
        Py_ssize_t stride = 3 * width + (png_rows ? 1 : 0);
        Py_BEGIN_ALLOW_THREADS
        if (!colors_boxes_avx2(c, width, rows, t, o, end_of_out, png_rows, b)) {
        uint8_t patterns[256 * 48]; /* each code's colour repeated 16 times */
        for (int k = 0; k < 256; k++)
            for (int j = 0; j < 16; j++)
                memcpy(patterns + 48 * k + 3 * j, t + 3 * k, 3);
        for (Py_ssize_t y = 0; y < rows; y++) {
            const uint8_t *row = c + y * width;
            uint8_t *orow = o + y * stride + (png_rows ? 1 : 0);
            Py_ssize_t room = end_of_out - (orow - o); /* bytes from the row's start to the end of out */
            if (png_rows)
                orow[-1] = 0; /* filter type None (after any overrun of the row above) */
            Py_ssize_t x = 0;
            while (x < width) {
                uint8_t v = row[x];
                Py_ssize_t end = byte_run_end(row, x, width);
                int32_t *box = b + 4 * v;
                if (x < box[0]) box[0] = (int32_t)x;
                if (end - 1 > box[2]) box[2] = (int32_t)(end - 1);
                if (box[3] != (int32_t)y) { /* first run of v in this row */
                    if (box[3] < 0) box[1] = (int32_t)y;
                    box[3] = (int32_t)y;
                }
                /* the run's colour, 16 pixels per 48-byte copy of its pattern; a copy may run past
                 * the run into bytes that later runs (or the next row's filter byte) overwrite,
                 * never past out */
                const uint8_t *pattern = patterns + 48 * v;
                Py_ssize_t i = x;
                for (; i < end && 3 * i + 48 <= room; i += 16)
                    memcpy(orow + 3 * i, pattern, 48);
                for (; i < end; i++)
                    memcpy(orow + 3 * i, pattern, 3);
                x = end;
            }
        }
        }
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&codes);
    PyBuffer_Release(&table);
    PyBuffer_Release(&out);
    PyBuffer_Release(&boxes);
    return result;
}


/* u8_lookup_small(values, table, out, width=0, top=255): u8_lookup's result (same arguments), 32
 * pixels per step where the values are small. The label map of one image holds a few dozen values
 * (an index writer's codes are 0..segments), and a table of 16 entries is one byte shuffle: when
 * every value is below 64, each 16-entry quarter of the table that the values reach is a vpshufb
 * (AVX2, chosen at run time), and 32 values cost ~11 instructions where u8_lookup's memset per run
 * costs ~50 per run (runs of ~37 pixels). `top`: the largest value the caller expects (an index
 * writer knows it); the values' maximum is taken on the way and, should one exceed it, the image is
 * done again run by run, so a wrong `top` costs time, never a wrong byte. Without a `top` under 64
 * a max pass decides first. Values of 64 and over, or no AVX2: run by run, as u8_lookup. */
static void lookup_runs(const uint8_t *p, const uint8_t *t, uint8_t *o, Py_ssize_t n, Py_ssize_t width) {
    Py_ssize_t row = width > 0 ? width : n;
    for (Py_ssize_t start = 0; start < n; start += row) {
        const uint8_t *src = p + start;
        uint8_t *dst = o + start + (width > 0 ? start / width + 1 : 0);
        if (width > 0)
            dst[-1] = 0;
        Py_ssize_t i = 0;
        while (i < row) {
            Py_ssize_t j = byte_run_end(src, i, row);
            memset(dst + i, t[src[i]], (size_t)(j - i));
            i = j;
        }
    }
}

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define HAVE_SHUFFLE_LOOKUP 1
__attribute__((target("avx2"))) static int max_u8_avx2(const uint8_t *p, Py_ssize_t n) {
    __m256i m = _mm256_setzero_si256();
    Py_ssize_t i = 0;
    for (; i + 32 <= n; i += 32)
        m = _mm256_max_epu8(m, _mm256_loadu_si256((const __m256i *)(const void *)(p + i)));
    uint8_t lanes[32];
    _mm256_storeu_si256((__m256i *)(void *)lanes, m);
    int best = 0;
    for (int k = 0; k < 32; k++) best = lanes[k] > best ? lanes[k] : best;
    for (; i < n; i++) best = p[i] > best ? p[i] : best;
    return best;
}

/* one row of `len` values through `quarters` 16-entry shuffles (right for values < 16 * quarters;
 * others become 0); returns the row's largest value. Inlined with a constant `quarters`: unrolled. */
__attribute__((target("avx2"), always_inline)) static inline int shuffle_row(const uint8_t *src, uint8_t *dst,
                                                                            Py_ssize_t len, const uint8_t *t,
                                                                            const int quarters) {
    __m256i q[4], base[4];
    const __m256i bias = _mm256_set1_epi8(0x70); /* x - 16k in 0..15 -> 0x70..0x7F; else bit 7 set: 0 */
    for (int k = 0; k < quarters; k++) {
        q[k] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(t + 16 * k)));
        base[k] = _mm256_set1_epi8((char)(16 * k));
    }
    __m256i m = _mm256_setzero_si256();
    Py_ssize_t i = 0;
    for (; i + 32 <= len; i += 32) {
        __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)(src + i));
        m = _mm256_max_epu8(m, x);
        __m256i r = _mm256_shuffle_epi8(q[0], _mm256_adds_epu8(x, bias));
        for (int k = 1; k < quarters; k++)
            r = _mm256_or_si256(r, _mm256_shuffle_epi8(q[k], _mm256_adds_epu8(_mm256_sub_epi8(x, base[k]), bias)));
        _mm256_storeu_si256((__m256i *)(void *)(dst + i), r);
    }
    uint8_t lanes[32];
    _mm256_storeu_si256((__m256i *)(void *)lanes, m);
    int best = 0;
    for (int k = 0; k < 32; k++) best = lanes[k] > best ? lanes[k] : best;
    for (; i < len; i++) {
        best = src[i] > best ? src[i] : best;
        dst[i] = t[src[i]];
    }
    return best;
}

#define SHUFFLE_ROWS(QUARTERS)                                                     \
    for (Py_ssize_t start = 0; start < n; start += row) {                          \
        uint8_t *dst = o + start + (width > 0 ? start / width + 1 : 0);            \
        if (width > 0)                                                             \
            dst[-1] = 0; /* filter type None */                                    \
        int m_ = shuffle_row(p + start, dst, row, t, QUARTERS);                    \
        seen = m_ > seen ? m_ : seen;                                              \
    }

/* the image through `quarters` shuffles; returns its largest value (the result is right iff it is
 * below 16 * quarters) */
__attribute__((target("avx2"))) static int shuffle_lookup(const uint8_t *p, const uint8_t *t, uint8_t *o,
                                                          Py_ssize_t n, Py_ssize_t width, int quarters) {
    Py_ssize_t row = width > 0 ? width : n;
    int seen = 0;
    switch (quarters) {
    case 1: SHUFFLE_ROWS(1) break;
    case 2: SHUFFLE_ROWS(2) break;
    case 3: SHUFFLE_ROWS(3) break;
    default: SHUFFLE_ROWS(4) break;
    }
    return seen;
}

/* AVX2 (and BMI1, which the colour loop's bit tricks use) on this CPU, and not turned off by
 * SEGCONVERT_NO_AVX2=1 (the tests run the portable loops that way too, on the same machine). */
static int have_avx2(void) {
    static int known = -1;
    if (known < 0) {
        const char *off = getenv("SEGCONVERT_NO_AVX2");
        __builtin_cpu_init();
        known = (off == NULL || off[0] == '\0' || off[0] == '0') && __builtin_cpu_supports("avx2")
                && __builtin_cpu_supports("bmi") ? 1 : 0;
    }
    return known;
}
#else
#define HAVE_SHUFFLE_LOOKUP 0
#endif

static PyObject *u8_lookup_small(PyObject *self, PyObject *args) {
    Py_buffer values, table, out;
    Py_ssize_t width = 0;
    int top = 255;
    if (!PyArg_ParseTuple(args, "y*y*w*|ni", &values, &table, &out, &width, &top))
        return NULL;
    PyObject *result = NULL;
    if (table.len != 256) {
        PyErr_SetString(PyExc_ValueError, "table must be 256 bytes");
    } else if (width < 0 || (width > 0 && values.len % width != 0)) {
        PyErr_SetString(PyExc_ValueError, "values must hold whole rows of `width` bytes");
    } else if (out.len != values.len + (width > 0 ? values.len / width : 0)) {
        PyErr_SetString(PyExc_ValueError, width > 0 ? "out must hold (1 + width) bytes per row"
                                                    : "out must be as long as values");
    } else {
        const uint8_t *p = (const uint8_t *)values.buf;
        const uint8_t *t = (const uint8_t *)table.buf;
        uint8_t *o = (uint8_t *)out.buf;
        Py_ssize_t n = values.len;
        Py_BEGIN_ALLOW_THREADS
        int done = 0;
#if HAVE_SHUFFLE_LOOKUP
        if (n && have_avx2()) {
            if (top < 0 || top >= 64)
                top = max_u8_avx2(p, n);
            if (top < 64) {
                int quarters = top / 16 + 1;
                done = shuffle_lookup(p, t, o, n, width, quarters) < 16 * quarters;
            }
        }
#endif
        if (!done)
            lookup_runs(p, t, o, n, width);
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&values);
    PyBuffer_Release(&table);
    PyBuffer_Release(&out);
    return result;
}

/* colors_boxes_avx2: code_colors_boxes' pixel loop (same results) with AVX2, ~3x fewer instructions.
 * Run ends come from 64-pixel masks (two 32-byte compares of the codes with the codes one pixel on;
 * each run is then a count-trailing-zeros), and a run's colour goes out 32 pixels per three 32-byte
 * stores of its pattern (built the first time a code occurs, not for all 256 codes). As in the SSE2
 * loop, a store may run past its run into bytes that the next run (or the next row, which writes
 * its filter byte after the row above) overwrites, never past out. Returns 0 without AVX2. */
#if HAVE_SHUFFLE_LOOKUP
/* bit j: pixel j of the 64 at p differs from pixel j + 1 (reads p[0..64]) */
__attribute__((target("avx2"), always_inline)) static inline uint64_t run_ends64(const uint8_t *p) {
    __m256i a0 = _mm256_loadu_si256((const __m256i *)(const void *)p);
    __m256i a1 = _mm256_loadu_si256((const __m256i *)(const void *)(p + 32));
    __m256i b0 = _mm256_loadu_si256((const __m256i *)(const void *)(p + 1));
    __m256i b1 = _mm256_loadu_si256((const __m256i *)(const void *)(p + 33));
    uint32_t e0 = ~(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(a0, b0));
    uint32_t e1 = ~(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(a1, b1));
    return (uint64_t)e0 | (uint64_t)e1 << 32;
}

/* the runs that end in the 64 pixels from x0 (bits of `ends`): box, then colour. In rows whose
 * stores cannot pass the end of out (`roomy`) the 96-byte stores go unchecked. */
#define COLOR_RUNS(ends, x0)                                                       \
    while (ends) {                                                                 \
        Py_ssize_t end = (x0) + (Py_ssize_t)__builtin_ctzll(ends) + 1;             \
        ends &= ends - 1;                                                          \
        uint8_t v = row[start];                                                    \
        int32_t *box = b + 4 * v;                                                  \
        if (start < box[0]) box[0] = (int32_t)start;                               \
        if (end - 1 > box[2]) box[2] = (int32_t)(end - 1);                         \
        if (box[3] != (int32_t)y) { /* first run of v in this row */               \
            if (box[3] < 0) box[1] = (int32_t)y;                                   \
            box[3] = (int32_t)y;                                                   \
        }                                                                          \
        uint8_t *pattern = patterns + 96 * v;                                      \
        if (!built[v]) {                                                           \
            for (int j = 0; j < 32; j++)                                           \
                memcpy(pattern + 3 * j, t + 3 * v, 3);                             \
            built[v] = 1;                                                          \
        }                                                                          \
        __m256i p0 = _mm256_load_si256((const __m256i *)(const void *)pattern);    \
        __m256i p1 = _mm256_load_si256((const __m256i *)(const void *)(pattern + 32)); \
        __m256i p2 = _mm256_load_si256((const __m256i *)(const void *)(pattern + 64)); \
        Py_ssize_t i = start;                                                      \
        if (roomy) {                                                               \
            for (; i < end; i += 32) {                                             \
                _mm256_storeu_si256((__m256i *)(void *)(orow + 3 * i), p0);        \
                _mm256_storeu_si256((__m256i *)(void *)(orow + 3 * i + 32), p1);   \
                _mm256_storeu_si256((__m256i *)(void *)(orow + 3 * i + 64), p2);   \
            }                                                                      \
        } else {                                                                   \
            for (; i < end && 3 * i + 96 <= room; i += 32) {                       \
                _mm256_storeu_si256((__m256i *)(void *)(orow + 3 * i), p0);        \
                _mm256_storeu_si256((__m256i *)(void *)(orow + 3 * i + 32), p1);   \
                _mm256_storeu_si256((__m256i *)(void *)(orow + 3 * i + 64), p2);   \
            }                                                                      \
            for (; i < end; i++)                                                   \
                memcpy(orow + 3 * i, pattern, 3);                                  \
        }                                                                          \
        start = end;                                                               \
    }

__attribute__((target("avx2,bmi"))) static void colors_boxes_avx2_rows(const uint8_t *c, Py_ssize_t width,
                                                                     Py_ssize_t rows, const uint8_t *t,
                                                                     uint8_t *o, Py_ssize_t end_of_out,
                                                                     int png_rows, int32_t *b) {
    uint8_t patterns[256 * 96] __attribute__((aligned(32))); /* code k's colour 32 times, once k occurs */
    uint8_t built[256];
    memset(built, 0, sizeof(built));
    const uint8_t *end_of_codes = c + rows * width;
    Py_ssize_t stride = 3 * width + (png_rows ? 1 : 0);
    Py_ssize_t last = (width - 1) / 64 * 64; /* the first pixel of each row's last block of <= 64 */
    for (Py_ssize_t y = 0; y < rows; y++) {
        const uint8_t *row = c + y * width;
        uint8_t *orow = o + y * stride + (png_rows ? 1 : 0);
        Py_ssize_t room = end_of_out - (orow - o);
        /* a store starts at a pixel of the row and writes 96 bytes: inside out while the row's
         * last pixel + 96 bytes is */
        int roomy = 3 * (width - 1) + 96 <= room;
        if (png_rows)
            orow[-1] = 0; /* filter type None (after any overrun of the row above) */
        Py_ssize_t start = 0; /* of the current run */
        Py_ssize_t x0 = 0;
        for (; x0 < last; x0 += 64) { /* blocks with a pixel after them in the row */
            uint64_t ends = run_ends64(row + x0);
            COLOR_RUNS(ends, x0)
        }
        Py_ssize_t n = width - x0; /* 1..64 pixels, the row's last */
        uint64_t ends;
        if (n == 64 && row + x0 + 65 <= end_of_codes) {
            ends = run_ends64(row + x0);
        } else {
            ends = 0;
            for (Py_ssize_t j = 0; j + 1 < n; j++)
                ends |= (uint64_t)(row[x0 + j] != row[x0 + j + 1]) << j;
        }
        ends = (n == 64 ? ends : ends & ((1ull << n) - 1)) | 1ull << (n - 1); /* a run ends at the row's end */
        COLOR_RUNS(ends, x0)
    }
}
#undef COLOR_RUNS
#endif

static int colors_boxes_avx2(const uint8_t *c, Py_ssize_t width, Py_ssize_t rows, const uint8_t *t, uint8_t *o,
                             Py_ssize_t end_of_out, int png_rows, int32_t *b) {
#if HAVE_SHUFFLE_LOOKUP
    if (!have_avx2())
        return 0;
    colors_boxes_avx2_rows(c, width, rows, t, o, end_of_out, png_rows, b);
    return 1;
#else
    (void)c; (void)width; (void)rows; (void)t; (void)o; (void)end_of_out; (void)png_rows; (void)b;
    return 0;
#endif
}

#if HAVE_POSIX_FILES
/* write_replace(tmp, path, data) -> ns: create `tmp` (O_CREAT | O_EXCL, mode 0666 as the umask
 * allows), write all of `data`, close it and rename it over `path`, with the GIL released
 * once for the four system calls, which took the nanoseconds returned (the write-behind's
 * measure of the file system); on a failure after the create, `tmp` is removed. OSError
 * (FileExistsError when `tmp` exists: the caller picks another name) with the file it is
 * about. png.write_atomic's steps, for the write-behind thread: each os call it replaces
 * takes and gives back the GIL, which the converting thread then waits for. */
static PyObject *write_replace(PyObject *self, PyObject *args) {
    PyObject *tmp_obj, *path_obj;
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "O&O&y*", PyUnicode_FSConverter, &tmp_obj, PyUnicode_FSConverter, &path_obj, &data))
        return NULL;
    const char *tmp = PyBytes_AS_STRING(tmp_obj), *path = PyBytes_AS_STRING(path_obj);
    int err = 0, on_path = 0;
    struct timespec t0, t1;
    Py_BEGIN_ALLOW_THREADS
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int fd;
    do {
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        err = errno;
    } else {
        const char *p = (const char *)data.buf;
        Py_ssize_t left = data.len;
        while (left > 0) {
            ssize_t n = write(fd, p, (size_t)left);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                err = errno;
                break;
            }
            p += n;
            left -= n;
        }
        if (close(fd) != 0 && !err && errno != EINTR)
            err = errno;
        if (!err && rename(tmp, path) != 0) {
            err = errno;
            on_path = 1;
        }
        if (err)
            unlink(tmp);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    PyObject *result = NULL;
    if (err) {
        errno = err;
        PyObject *name = PyUnicode_DecodeFSDefault(on_path ? path : tmp);
        if (name != NULL) {
            PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, name);
            Py_DECREF(name);
        }
    } else {
        result = PyLong_FromLongLong((long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec));
    }
    Py_DECREF(tmp_obj);
    Py_DECREF(path_obj);
    return result;
}
#endif

/* simd(): which pixel loops this process runs ("avx2" or "portable"), for tests and reports. */
static PyObject *simd(PyObject *self, PyObject *args) {
#if HAVE_SHUFFLE_LOOKUP
    return PyUnicode_FromString(have_avx2() ? "avx2" : "portable");
#else
    return PyUnicode_FromString("portable");
#endif
}
/* defined at the end of the file */
static PyObject *u8_pair_runs(PyObject *self, PyObject *args);
static PyObject *u8_paint_runs(PyObject *self, PyObject *args);
static PyObject *png_unfilter8_pairs(PyObject *self, PyObject *args);
static PyObject *u8_paint_runs_inplace(PyObject *self, PyObject *args);

static PyMethodDef methods[] = {
    {"simd", simd, METH_NOARGS, "simd() -> 'avx2' or 'portable': the pixel loops this process runs."},
    {"rgb_lookup", rgb_lookup, METH_VARARGS,
     "rgb_lookup(rgb, table, out, hist, offset=0): out[i] = table[R | G<<8 | B<<16] + offset (mod 256);"
     " hist[out[i]] += 1."},
    {"rgb_codes", rgb_codes, METH_VARARGS,
     "rgb_codes(rgb, codes, out, hist, unknown=255): out[i] = codes.get(R | G<<8 | B<<16, unknown);"
     " hist[out[i]] += 1. codes: dict of int id -> int code 0..255; ids outside 24 bits never match."},
    {"u8_lookup", u8_lookup, METH_VARARGS,
     "u8_lookup(values, table, out, width=0): out[i] = table[values[i]] (table: 256 bytes); with a width,"
     " out is PNG rows (a filter byte 0, then width values, per row)."},
    {"code_colors", code_colors, METH_VARARGS,
     "code_colors(codes, table, out): 3 bytes table[3 * code] per code into out (table: 256 x 3 bytes)."},
    {"u8_histogram", u8_histogram, METH_VARARGS,
     "u8_histogram(values, hist): hist[v] += 1 for every byte v of values (hist: 256 int64)."},
    {"code_boxes", code_boxes, METH_VARARGS,
     "code_boxes(codes, width, boxes): (min x, min y, max x, max y) of every code of a uint8 code map"
     " into boxes (256 x 4 int32, filled with (width, height, -1, -1) by the caller)."},
    {"code_colors_boxes", code_colors_boxes, METH_VARARGS,
     "code_colors_boxes(codes, width, table, out, boxes, png_rows=False): code_colors and code_boxes in one"
     " pass; with png_rows, out is PNG rows (a filter byte 0, then 3 x width bytes, per row)."},
    {"png_unfilter8", png_unfilter8, METH_VARARGS,
     "png_unfilter8(raw, width, out, hist): undo the row filters of an inflated 1-byte-per-pixel PNG"
     " into out; hist[v] += 1 for every value."},
    {"u8_pair_counts", u8_pair_counts, METH_VARARGS,
     "u8_pair_counts(a, b, hist, keys) -> n: hist[a[i] << 8 | b[i]] += 1 (hist: 65536 int64, zero on"
     " entry); the n pairs that occur into keys (65536 uint16), in order of first occurrence."},
    {"u8_overlay", u8_overlay, METH_VARARGS,
     "u8_overlay(base, table, top, out): out[i] = top[i] or table[base[i]] (table: 256 bytes)."},
    {"rle_paint", rle_paint, METH_VARARGS,
     "rle_paint(strings, ids, buf) -> bool: paint COCO compressed RLE count strings (bytes) into a zeroed"
     " column-major uint16/uint32 buffer, string k's foreground as ids[k], in order; False if one is malformed."},
    {"parse_numbers", parse_numbers, METH_VARARGS,
     "parse_numbers(text, values, rows) -> (n_values, n_rows) or None: plain decimals of a text, with"
     " (line number, count) per non-empty line; None where Python must parse (see the source)."},
    {"u8_lookup_small", u8_lookup_small, METH_VARARGS,
     "u8_lookup_small(values, table, out, width=0, top=255): u8_lookup's result; byte shuffles (AVX2) when"
     " every value is below 64 (top: the largest value expected; checked, a wrong one only costs time)."},
    {"u8_pair_runs", u8_pair_runs, METH_VARARGS,
     "u8_pair_runs(a, b, hist, keys, starts) -> (pairs, counts, n_runs): the pairs a << 8 | b that occur"
     " (sorted list) and their counts (list), from one scan of both maps that records where runs of one"
     " pair start (int32, then the length); n_runs -1 when they do not fit. hist (65536 int64, zero) and"
     " keys (65536 uint16) are work space."},
    {"u8_paint_runs", u8_paint_runs, METH_VARARGS,
     "u8_paint_runs(a, b, starts, n_runs, table, out, hist): each run of u8_pair_runs painted a[i] if"
     " non-zero, else table[b[i]] (table: 256 bytes); hist[v] += pixels painted v (256 int64)."},
#if HAVE_POSIX_FILES
    {"write_replace", write_replace, METH_VARARGS,
     "write_replace(tmp, path, data) -> ns: create tmp (O_EXCL), write data, close, rename over path; the"
     " GIL released once; the nanoseconds those calls took. OSError naming the file (tmp removed after a"
     " failure)."},
#endif
    {"png_unfilter8_pairs", png_unfilter8_pairs, METH_VARARGS,
     "png_unfilter8_pairs(raw, width, out, low, hist, keys, starts) -> (pairs, counts, n_runs):"
     " png_unfilter8 into out and u8_pair_runs(out, low, hist, keys, starts) in one pass (out's value"
     " counts are not made)."},
    {"u8_paint_runs_inplace", u8_paint_runs_inplace, METH_VARARGS,
     "u8_paint_runs_inplace(a, b, starts, n_runs, table, hist): u8_paint_runs into a itself: runs where a"
     " is 0 become table[b]; hist[v] += pixels of value v afterwards (256 int64)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", NULL, -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }

/* u8_pair_runs(a, b, hist, keys, starts) -> (pairs, counts, n_runs): the pairs a[i] << 8 | b[i]
 * that occur in two maps of one length, sorted, and the pixel count of each, as two lists (what
 * u8_pair_counts gives, without the numpy calls that sort and read it: a dozen per image where
 * the pairs are a few dozen), from one scan of both maps at once, which also records where
 * the stretches of one pair start (starts, int32; after the last run, the maps' length) for
 * u8_paint_runs to write a label map from without scanning the maps again. n_runs is -1 when
 * the runs do not fit in starts (noise, or 2^31 pixels or more): the pairs are counted all the
 * same, and the caller paints another way (u8_overlay). hist (65536 int64) and keys (65536
 * uint16) are work space; hist must be zero on entry and is left zero.
 *
 * VOC's class and object maps change together at ~5,500 places in 640x480; where
 * u8_pair_counts and u8_overlay each found every run end of both maps with 8-byte words (~1.5 M
 * instructions per image together), this pass (pair_scan) and the paint take ~0.4 M. */

/* Where two maps change: bit x of mask[w] is set when pixel j0 + 32 w + x differs from the pixel
 * before it in either map (j0 >= 1; the words cover whole pixels of the maps). One step per 32
 * pixels whatever the runs, as the masks' own tight loop: AVX2 where the CPU has it (chosen at
 * run time), else SSE2 (x86-64's baseline), else byte by byte. */
static void change_mask(const uint8_t *p, const uint8_t *q, Py_ssize_t j0, Py_ssize_t words, uint32_t *mask) {
    for (Py_ssize_t w = 0; w < words; w++) {
        const uint8_t *a = p + j0 + 32 * w, *b = q + j0 + 32 * w;
#if defined(__SSE2__)
        uint32_t m = 0;
        for (int half = 0; half < 32; half += 16) {
            __m128i same = _mm_and_si128(
                _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(a + half)),
                               _mm_loadu_si128((const __m128i *)(a + half - 1))),
                _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(b + half)),
                               _mm_loadu_si128((const __m128i *)(b + half - 1))));
            m |= (uint32_t)(_mm_movemask_epi8(same) ^ 0xFFFF) << half;
        }
        mask[w] = m;
#else
        uint32_t m = 0;
        for (int x = 0; x < 32; x++)
            m |= (uint32_t)(a[x] != a[x - 1] || b[x] != b[x - 1]) << x;
        mask[w] = m;
#endif
    }
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && !defined(SEGCONVERT_NO_AVX2)
#include <immintrin.h>
#define HAVE_AVX2_PATH 1
__attribute__((target("avx2"))) static void change_mask_avx2(const uint8_t *p, const uint8_t *q, Py_ssize_t j0,
                                                              Py_ssize_t words, uint32_t *mask) {
    for (Py_ssize_t w = 0; w < words; w++) {
        const uint8_t *a = p + j0 + 32 * w, *b = q + j0 + 32 * w;
        __m256i same = _mm256_and_si256(
            _mm256_cmpeq_epi8(_mm256_loadu_si256((const __m256i *)a), _mm256_loadu_si256((const __m256i *)(a - 1))),
            _mm256_cmpeq_epi8(_mm256_loadu_si256((const __m256i *)b), _mm256_loadu_si256((const __m256i *)(b - 1))));
        mask[w] = ~(uint32_t)_mm256_movemask_epi8(same);
    }
}

static int cpu_has_avx2(void) {
#if HAVE_SHUFFLE_LOOKUP
    return have_avx2(); /* one answer for every AVX2 loop, SEGCONVERT_NO_AVX2 included */
#else
    static int known = -1;
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx2") ? 1 : 0;
    }
    return known;
#endif
}
#else
#define HAVE_AVX2_PATH 0
#endif

/* The state of one scan for pair runs over two maps (pair_scan_upto): it can be fed the maps a
 * stretch at a time as they are written (png_unfilter8_pairs scans each row of the object map as
 * soon as it is unfiltered, while the row is in L1) or all at once (u8_pair_runs); the runs, the
 * counts and the starts are the same either way. */
typedef struct {
    const uint8_t *p, *q; /* the maps (the high and the low byte of a pair) */
    int64_t *h;           /* 65536 counters, zero on entry */
    uint16_t *k;          /* the pairs found, in order of first occurrence */
    int32_t *st;          /* the runs' starts */
    Py_ssize_t cap;       /* room in st (entries) */
    Py_ssize_t i;         /* where the current run starts */
    Py_ssize_t j;         /* the next pixel to compare with the one before it */
    Py_ssize_t found, runs;
    int room; /* every start so far is in st */
#if HAVE_AVX2_PATH
    int avx2;
#endif
} PairScan;

static void pair_scan_init(PairScan *s, const uint8_t *p, const uint8_t *q, int64_t *h, uint16_t *k, int32_t *st,
                           Py_ssize_t cap) {
    s->p = p;
    s->q = q;
    s->h = h;
    s->k = k;
    s->st = st;
    s->cap = cap;
    s->i = 0;
    s->j = 1;
    s->found = s->runs = 0;
    s->room = 1;
#if HAVE_AVX2_PATH
    s->avx2 = cpu_has_avx2();
#endif
}

/* One run [i, j) of pair p[i] << 8 | q[i]: counted and, with RECORD, its start recorded. */
#define PAIR_EMIT(j, RECORD)                                                       \
    do {                                                                           \
        uint16_t key_ = (uint16_t)((uint32_t)p[i] << 8 | q[i]);                    \
        if (h[key_] == 0) k[found++] = key_;                                       \
        h[key_] += (j) - i;                                                        \
        if (RECORD) st[runs] = (int32_t)i;                                         \
        runs++;                                                                    \
        i = (j);                                                                   \
    } while (0)

/* The runs of two maps from their change masks, 4096 pixels at a time (the masks stay in L1):
 * a word is at most 32 run ends, so the room for their starts is checked once per chunk (run
 * by run near the end of the room). Scans the pixels before `limit` (both maps must be written
 * there) in whole 32-pixel words and leaves the rest for the next call; with `last` (limit is
 * the maps' length), the remaining pixels one by one and the final run. */
static void pair_scan_upto(PairScan *s, Py_ssize_t limit, int last) {
    enum { WORDS = 128 };
    uint32_t mask[WORDS];
    const uint8_t *p = s->p, *q = s->q;
    int64_t *h = s->h;
    uint16_t *k = s->k;
    int32_t *st = s->st;
    const Py_ssize_t cap = s->cap;
    Py_ssize_t i = s->i, j = s->j, found = s->found, runs = s->runs;
    int room = s->room;
    while (j + 32 <= limit) {
        Py_ssize_t words = (limit - j) / 32 < WORDS ? (limit - j) / 32 : WORDS;
#if HAVE_AVX2_PATH
        if (s->avx2)
            change_mask_avx2(p, q, j, words, mask);
        else
#endif
            change_mask(p, q, j, words, mask);
        if (room && runs + 32 * words <= cap) { /* room for every run end of the chunk */
            for (Py_ssize_t w = 0; w < words; w++)
                for (uint32_t m = mask[w]; m; m &= m - 1)
                    PAIR_EMIT(j + 32 * w + __builtin_ctz(m), 1);
        } else { /* near the end of the room (or past it): checked run by run */
            for (Py_ssize_t w = 0; w < words; w++)
                for (uint32_t m = mask[w]; m; m &= m - 1)
                    PAIR_EMIT(j + 32 * w + __builtin_ctz(m), (room = room && runs < cap));
        }
        j += 32 * words;
    }
    if (last) {
        for (; j < limit; j++)
            if (p[j] != p[j - 1] || q[j] != q[j - 1])
                PAIR_EMIT(j, (room = room && runs < cap));
        if (limit > 0)
            PAIR_EMIT(limit, (room = room && runs < cap));
    }
    s->i = i;
    s->j = j;
    s->found = found;
    s->runs = runs;
    s->room = room;
}
#undef PAIR_EMIT

/* The result of a finished scan, as u8_pair_runs returns it: (pairs, counts, n_runs), the pairs
 * sorted; the counters used are zeroed again (hist is left as it was given: zero). Needs the GIL;
 * sort_pairs first (without it). */
static int cmp_u16(const void *x, const void *y) {
    return (int)*(const uint16_t *)x - (int)*(const uint16_t *)y;
}

static void sort_pairs(uint16_t *k, Py_ssize_t found) {
    if (found < 32) { /* a few dozen pairs: insertion sort */
        for (Py_ssize_t x = 1; x < found; x++) {
            uint16_t v = k[x];
            Py_ssize_t y = x;
            for (; y > 0 && k[y - 1] > v; y--) k[y] = k[y - 1];
            k[y] = v;
        }
    } else {
        qsort(k, (size_t)found, sizeof(uint16_t), cmp_u16);
    }
}

/* The counters a scan used zeroed again: hist is left as it was given (zero), for the next image. */
static void clear_pairs(const uint16_t *k, int64_t *h, Py_ssize_t found) {
    for (Py_ssize_t x = 0; x < found; x++)
        h[k[x]] = 0;
}

static PyObject *pairs_result(const uint16_t *k, int64_t *h, Py_ssize_t found, Py_ssize_t runs) {
    PyObject *result = NULL;
    PyObject *pairs = PyList_New(found), *counts = PyList_New(found);
    if (pairs != NULL && counts != NULL) {
        Py_ssize_t x = 0;
        for (; x < found; x++) {
            PyObject *kk = PyLong_FromLong(k[x]), *cc = PyLong_FromLongLong(h[k[x]]);
            if (kk == NULL || cc == NULL) {
                Py_XDECREF(kk);
                Py_XDECREF(cc);
                break;
            }
            PyList_SET_ITEM(pairs, x, kk);
            PyList_SET_ITEM(counts, x, cc);
        }
        if (x == found)
            result = Py_BuildValue("NNn", pairs, counts, runs);
        else
            for (; x < found; x++) { /* fill the rest so that the lists can be freed */
                PyList_SET_ITEM(pairs, x, Py_NewRef(Py_None));
                PyList_SET_ITEM(counts, x, Py_NewRef(Py_None));
            }
    }
    if (result == NULL) {
        Py_XDECREF(pairs);
        Py_XDECREF(counts);
    }
    clear_pairs(k, h, found);
    return result;
}

/* The checks both pair kernels make of their work space; 0 and a ValueError set when wrong. */
static int pair_buffers_ok(const Py_buffer *hist, const Py_buffer *keys, const Py_buffer *starts) {
    if (hist->len != 65536 * (Py_ssize_t)sizeof(int64_t) || keys->len != 65536 * (Py_ssize_t)sizeof(uint16_t)) {
        PyErr_SetString(PyExc_ValueError, "hist must be 65536 int64 counters, keys 65536 uint16");
        return 0;
    }
    if (starts->len % sizeof(int32_t) || starts->len == 0) {
        PyErr_SetString(PyExc_ValueError, "starts must be int32, at least one");
        return 0;
    }
    return 1;
}

/* Room for run starts in `starts` (one entry is kept for the end); none past int32 positions. */
static Py_ssize_t starts_cap(const Py_buffer *starts, Py_ssize_t n) {
    return n <= INT32_MAX ? (Py_ssize_t)(starts->len / sizeof(int32_t)) - 1 : 0;
}

static PyObject *u8_pair_runs(PyObject *self, PyObject *args) {
    Py_buffer a, b, hist, keys, starts;
    if (!PyArg_ParseTuple(args, "y*y*w*w*w*", &a, &b, &hist, &keys, &starts))
        return NULL;
    PyObject *result = NULL;
    if (a.len != b.len) {
        PyErr_SetString(PyExc_ValueError, "a and b must be the same length");
    } else if (pair_buffers_ok(&hist, &keys, &starts)) {
        PairScan s;
        Py_ssize_t n = a.len;
        pair_scan_init(&s, (const uint8_t *)a.buf, (const uint8_t *)b.buf, (int64_t *)hist.buf,
                       (uint16_t *)keys.buf, (int32_t *)starts.buf, starts_cap(&starts, n));
        Py_BEGIN_ALLOW_THREADS
        pair_scan_upto(&s, n, 1);
        if (s.room)
            s.st[s.runs] = (int32_t)n;
        sort_pairs(s.k, s.found);
        Py_END_ALLOW_THREADS
        result = pairs_result(s.k, s.h, s.found, s.room ? s.runs : -1);
    }
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    PyBuffer_Release(&hist);
    PyBuffer_Release(&keys);
    PyBuffer_Release(&starts);
    return result;
}

/* png_unfilter8_pairs(raw, width, out, low, hist, keys, starts) -> (pairs, counts, n_runs):
 * png_unfilter8 of a palette/grayscale PNG's inflated rows into out, and u8_pair_runs(out, low,
 * ...) of the result with another map of its size, in one pass: each row is scanned for pair
 * runs as soon as it is unfiltered, while it is in L1 (the scan lags at most 31 pixels behind the
 * rows, as it compares whole 32-pixel words). The same results as the two calls; VOC's object
 * PNG is decoded this way with its class map as `low`, which also spares the object map's value
 * counts (the pair counts hold them). ValueError on a filter type > 4 (out then partly written). */
static PyObject *png_unfilter8_pairs(PyObject *self, PyObject *args) {
    Py_buffer raw, out, low, hist, keys, starts;
    Py_ssize_t width;
    if (!PyArg_ParseTuple(args, "y*nw*y*w*w*w*", &raw, &width, &out, &low, &hist, &keys, &starts))
        return NULL;
    PyObject *result = NULL;
    if (width <= 0 || out.len % width != 0 || raw.len != out.len + out.len / width) {
        PyErr_SetString(PyExc_ValueError, "raw must hold (1 + width) bytes per row of out");
    } else if (low.len != out.len) {
        PyErr_SetString(PyExc_ValueError, "low must be as long as out");
    } else if (pair_buffers_ok(&hist, &keys, &starts)) {
        const uint8_t *r = (const uint8_t *)raw.buf;
        uint8_t *o = (uint8_t *)out.buf;
        Py_ssize_t rows = out.len / width, bad_row = -1, n = out.len;
        PairScan s;
        pair_scan_init(&s, o, (const uint8_t *)low.buf, (int64_t *)hist.buf, (uint16_t *)keys.buf,
                       (int32_t *)starts.buf, starts_cap(&starts, n));
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t y = 0; y < rows; y++) {
            uint8_t *row = o + y * width;
            if (unfilter_row(r + y * (width + 1) + 1, row, y ? row - width : NULL, width) < 0) {
                bad_row = y;
                break;
            }
            pair_scan_upto(&s, (y + 1) * width, y + 1 == rows);
        }
        if (bad_row < 0) {
            if (s.room)
                s.st[s.runs] = (int32_t)n;
            sort_pairs(s.k, s.found);
        }
        Py_END_ALLOW_THREADS
        if (bad_row >= 0) {
            clear_pairs(s.k, s.h, s.found);
            PyErr_Format(PyExc_ValueError, "row %zd has PNG filter type %d (0..4 exist)", bad_row,
                         (int)r[bad_row * (width + 1)]);
        } else {
            result = pairs_result(s.k, s.h, s.found, s.room ? s.runs : -1);
        }
    }
    PyBuffer_Release(&raw);
    PyBuffer_Release(&out);
    PyBuffer_Release(&low);
    PyBuffer_Release(&hist);
    PyBuffer_Release(&keys);
    PyBuffer_Release(&starts);
    return result;
}

static int starts_bad(const int32_t *st, Py_ssize_t runs, Py_ssize_t n); /* below */

/* The checks both paint kernels make of their arguments, in this order (0 and a ValueError
 * set when one fails): a 256-byte table, 256 int64 counters, maps of one length (same_lengths,
 * else lengths_msg), and n_runs within starts (none for empty maps of length n, else some). */
static int paint_args_ok(const Py_buffer *table, const Py_buffer *hist, const Py_buffer *starts, Py_ssize_t runs,
                         Py_ssize_t n, int same_lengths, const char *lengths_msg) {
    const char *msg = NULL;
    if (table->len != 256)
        msg = "table must be 256 bytes";
    else if (hist->len != 256 * (Py_ssize_t)sizeof(int64_t))
        msg = "hist must be 256 int64 counters";
    else if (!same_lengths)
        msg = lengths_msg;
    else if (runs < 0 || (Py_ssize_t)(starts->len / sizeof(int32_t)) <= runs || (runs == 0) != (n == 0))
        msg = "n_runs must be within starts";
    if (msg != NULL)
        PyErr_SetString(PyExc_ValueError, msg);
    return msg == NULL;
}

/* Bytes [s, e) of o set to v with stores that stay inside the stretch (overlapping each other
 * where the length is not a multiple of their width): for painting a map in place, where the
 * bytes after e are still to be read. */
static inline void fill_exact(uint8_t *o, Py_ssize_t s, Py_ssize_t e, uint8_t v) {
    Py_ssize_t len = e - s;
    if (len >= 16) {
#if defined(__SSE2__)
        const __m128i x = _mm_set1_epi8((char)v);
        for (Py_ssize_t c = s; c + 16 < e; c += 16) _mm_storeu_si128((__m128i *)(o + c), x);
        _mm_storeu_si128((__m128i *)(o + e - 16), x);
#else
        memset(o + s, v, (size_t)len);
#endif
    } else if (len >= 8) {
        uint64_t x = 0x0101010101010101ull * v;
        memcpy(o + s, &x, 8);
        memcpy(o + e - 8, &x, 8);
    } else {
        for (Py_ssize_t c = s; c < e; c++) o[c] = v;
    }
}

/* u8_paint_runs_inplace(a, b, starts, n_runs, table, hist): u8_paint_runs with out = a, painted
 * where a changes only: a run of pair (o, c) with o > 0 is already o; one with o = 0 becomes
 * table[c]. hist[v] += pixels of value v afterwards (256 int64). VOC's object map becomes its
 * label map so, writing only the stuff runs (about half of them) and no second map. */
static PyObject *u8_paint_runs_inplace(PyObject *self, PyObject *args) {
    Py_buffer a, b, starts, table, hist;
    Py_ssize_t runs;
    if (!PyArg_ParseTuple(args, "w*y*y*ny*w*", &a, &b, &starts, &runs, &table, &hist))
        return NULL;
    PyObject *result = NULL;
    const int32_t *st = (const int32_t *)starts.buf;
    if (paint_args_ok(&table, &hist, &starts, runs, a.len, a.len == b.len, "a and b must be the same length")) {
        uint8_t *o = (uint8_t *)a.buf;
        const uint8_t *q = (const uint8_t *)b.buf, *t = (const uint8_t *)table.buf;
        int64_t *h = (int64_t *)hist.buf;
        int bad = 0;
        Py_BEGIN_ALLOW_THREADS
        if (runs > 0 && !(bad = starts_bad(st, runs, a.len))) {
            for (Py_ssize_t r = 0; r < runs; r++) {
                const Py_ssize_t s = st[r], e = st[r + 1];
                uint8_t v = o[s];
                if (!v) {
                    v = t[q[s]];
                    if (v)
                        fill_exact(o, s, e, v);
                }
                h[v] += e - s;
            }
        }
        Py_END_ALLOW_THREADS
        if (bad) {
            PyErr_SetString(PyExc_ValueError, "starts must rise to the maps' length");
        } else {
            result = Py_None;
            Py_INCREF(result);
        }
    }
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    PyBuffer_Release(&starts);
    PyBuffer_Release(&table);
    PyBuffer_Release(&hist);
    return result;
}

/* u8_paint_runs(a, b, starts, n_runs, table, out, hist): the runs u8_pair_runs recorded from maps
 * a and b, painted as u8_overlay paints them -- a run of pair (o, c) is o where o > 0, else
 * table[c] (table: 256 bytes) -- and hist[v] += pixels painted v (hist: 256 int64), which a
 * reader needs anyway. out is as long as a and b; starts must rise from 0 to their length.
 *
 * A stretch [s, e) of one value is painted with 16- or 32-byte stores from s on, the last of
 * which may pass e: those bytes belong to the runs after it, painted later (in order); memset
 * where a store would pass the map's end. The starts are checked first (they must rise from
 * 0 to the maps' length, so that reading the maps at each is in bounds), in a loop of their
 * own, which leaves the painting loop few live values. */
static int starts_bad(const int32_t *st, Py_ssize_t runs, Py_ssize_t n) {
    int bad = st[0] != 0 || st[runs] != n;
    for (Py_ssize_t r = 0; r < runs; r++)
        bad |= st[r] >= st[r + 1];
    return bad;
}

#define PAINT_LOOP(SPLAT, STORE, W)                                                \
    do {                                                                           \
        uint8_t v = p[0] ? p[0] : t[q[0]];                                         \
        Py_ssize_t s = 0;                                                          \
        for (Py_ssize_t r = 1; r <= runs; r++) {                                   \
            const Py_ssize_t e = st[r];                                            \
            uint8_t w = (uint8_t)~v;                                               \
            if (r < runs) {                                                        \
                w = p[e];                                                          \
                if (!w) w = t[q[e]];                                               \
                if (w == v) continue; /* the same value on: one stretch */        \
            }                                                                      \
            h[v] += e - s;                                                         \
            if (e + (W) <= n) {                                                    \
                SPLAT;                                                             \
                for (Py_ssize_t c = s; c < e; c += (W)) STORE;                     \
            } else {                                                               \
                memset(o + s, v, (size_t)(e - s));                                 \
            }                                                                      \
            s = e;                                                                 \
            v = w;                                                                 \
        }                                                                          \
    } while (0)

static void paint_runs(const uint8_t *p, const uint8_t *q, const int32_t *st, Py_ssize_t runs, const uint8_t *t,
                       uint8_t *o, Py_ssize_t n, int64_t *h) {
#if defined(__SSE2__)
    PAINT_LOOP(__m128i x = _mm_set1_epi8((char)v), _mm_storeu_si128((__m128i *)(o + c), x), 16);
#else
    PAINT_LOOP(uint64_t x = 0x0101010101010101ull * v, memcpy(o + c, &x, 8), 8);
#endif
}

#if HAVE_AVX2_PATH
__attribute__((target("avx2"))) static void paint_runs_avx2(const uint8_t *p, const uint8_t *q, const int32_t *st,
                                                             Py_ssize_t runs, const uint8_t *t, uint8_t *o,
                                                             Py_ssize_t n, int64_t *h) {
    PAINT_LOOP(__m256i x = _mm256_set1_epi8((char)v), _mm256_storeu_si256((__m256i *)(o + c), x), 32);
}
#endif
#undef PAINT_LOOP

static PyObject *u8_paint_runs(PyObject *self, PyObject *args) {
    Py_buffer a, b, starts, table, out, hist;
    Py_ssize_t runs;
    if (!PyArg_ParseTuple(args, "y*y*y*ny*w*w*", &a, &b, &starts, &runs, &table, &out, &hist))
        return NULL;
    PyObject *result = NULL;
    const int32_t *st = (const int32_t *)starts.buf;
    if (paint_args_ok(&table, &hist, &starts, runs, out.len, a.len == b.len && out.len == a.len,
                      "a, b and out must be the same length")) {
        const uint8_t *p = (const uint8_t *)a.buf, *q = (const uint8_t *)b.buf, *t = (const uint8_t *)table.buf;
        uint8_t *o = (uint8_t *)out.buf;
        int64_t *h = (int64_t *)hist.buf;
        int bad = 0;
        Py_BEGIN_ALLOW_THREADS
        if (runs > 0 && !(bad = starts_bad(st, runs, out.len))) {
#if HAVE_AVX2_PATH
            if (cpu_has_avx2())
                paint_runs_avx2(p, q, st, runs, t, o, out.len, h);
            else
#endif
                paint_runs(p, q, st, runs, t, o, out.len, h);
        }
        Py_END_ALLOW_THREADS
        if (bad) {
            PyErr_SetString(PyExc_ValueError, "starts must rise to the maps' length");
        } else {
            result = Py_None;
            Py_INCREF(result);
        }
    }
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    PyBuffer_Release(&starts);
    PyBuffer_Release(&table);
    PyBuffer_Release(&out);
    PyBuffer_Release(&hist);
    return result;
}
