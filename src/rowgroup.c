/* rowgroup.c: the one row-grouping engine of the C core.
 *
 * sfp_group_rows() numbers the distinct rows of a table of key columns
 * (integer codes or doubles) in order of first appearance: the strata and L1
 * cells of coarsened exact matching (cem.c) and the binomial cells of the
 * stepped-wedge GLMM (glmm.c) are both made here.
 *
 * Two ways, chosen from the columns:
 *  - packed: when every column is integer with codes in a known range
 *    (0..max, validated by the caller, or min..max found in one pass) and
 *    the product of the ranges is below 2^62, a row's codes are packed
 *    exactly into one 64-bit word (mixed radix), so rows are equal iff their
 *    words are.  Small key spaces (at most 2n + 65536 words) are addressed
 *    directly; larger ones are hashed (sfp_word_codes).  The table is sized
 *    from the ranges, which is why they must be validated.
 *  - hashed: otherwise each row gets a 64-bit hash of its words (computed
 *    column by column, which reads a column-major table sequentially), rows
 *    go into an open-addressing table of at least 2n slots (linear probing),
 *    and equal hashes are either compared in full while probing, or joined
 *    on the hash and then verified column by column against the group's
 *    first row, falling back to the full comparison if a 64-bit collision
 *    joined different rows.
 * The word of an integer is its 32 bits; of a double, its 64 bits after
 * mapping -0 to 0 (so NA and NaN rows group by their bit patterns).  Scratch
 * comes from R_alloc, so an interrupt or error leaks nothing.
 */
#include "sfpceval.h"
#include <string.h>
#include <limits.h>

/* ---- dense codes of 64-bit words ----------------------------------------- */

void sfp_word_codes_init(sfp_word_codes *t) {
  t->size = 1024;
  t->table = (int *) R_alloc(t->size, sizeof(int));
  memset(t->table, 0, t->size * sizeof(int));
  t->word = (uint64_t *) R_alloc(t->size / 2, sizeof(uint64_t));
  t->n = 0;
}

void sfp_word_codes_grow(sfp_word_codes *t) {
  uint64_t *nw = (uint64_t *) R_alloc(t->size, sizeof(uint64_t));
  memcpy(nw, t->word, (t->size / 2) * sizeof(uint64_t));
  t->word = nw;
  t->size <<= 1;
  size_t mask = t->size - 1;
  t->table = (int *) R_alloc(t->size, sizeof(int));
  memset(t->table, 0, t->size * sizeof(int));
  for (int g = 0; g < t->n; g++) {
    size_t sl = (size_t) (mix64(t->word[g]) & mask);
    while (t->table[sl] != 0) sl = (sl + 1) & mask;
    t->table[sl] = g + 1;
  }
}

/* ---- the words of a row ---------------------------------------------------- */

static inline uint64_t col_word(const sfp_key_col *c, int i) {
  if (c->i != NULL) return (uint64_t) (uint32_t) c->i[i];
  double v = c->d[i] + 0.0; /* -0 -> 0 */
  uint64_t b;
  memcpy(&b, &v, sizeof b);
  return b;
}

static inline int rows_equal(const sfp_key_col *cols, int p, int i, int j) {
  for (int k = 0; k < p; k++)
    if (col_word(cols + k, i) != col_word(cols + k, j)) return 0;
  return 1;
}

/* first rows of the groups, grown as groups appear (only when wanted) */
typedef struct {
  int *row;
  size_t cap;
} first_rows;

static inline void note_first(first_rows *f, int g, int i) {
  if (f->row == NULL) return;
  if ((size_t) g >= f->cap) {
    int *nf = (int *) R_alloc(2 * f->cap, sizeof(int));
    memcpy(nf, f->row, f->cap * sizeof(int));
    f->row = nf;
    f->cap *= 2;
  }
  f->row[g] = i;
}

/* ---- packed keys ------------------------------------------------------------ */

/* The multipliers of the mixed radix and the offsets (minima) of the
 * columns, or 0 if the rows cannot be packed. *range gets the key space. */
static int plan_packing(const sfp_key_col *cols, int p, int n, uint64_t *mult,
                        int *lo, uint64_t *range) {
  uint64_t r_all = 1;
  for (int k = 0; k < p; k++) {
    const sfp_key_col *c = cols + k;
    if (c->i == NULL) return 0;
    int mn = 0, mx = c->max;
    if (mx < 0) { /* range unknown: find it */
      mn = c->i[0];
      mx = c->i[0];
      for (int i = 1; i < n; i++) {
        if (c->i[i] < mn) mn = c->i[i];
        if (c->i[i] > mx) mx = c->i[i];
      }
    }
    uint64_t r = (uint64_t) ((int64_t) mx - mn) + 1;
    if (r_all > (UINT64_C(1) << 62) / r) return 0;
    lo[k] = mn;
    mult[k] = r_all;
    r_all *= r;
  }
  *range = r_all;
  return 1;
}

static inline uint64_t packed_key(const sfp_key_col *cols, int p,
                                  const uint64_t *mult, const int *lo, int i) {
  uint64_t kk = 0;
  for (int k = 0; k < p; k++)
    kk += (uint64_t) ((int64_t) cols[k].i[i] - lo[k]) * mult[k];
  return kk;
}

static int group_packed(const sfp_key_col *cols, int p, int n, int *id,
                        first_rows *f, const uint64_t *mult, const int *lo,
                        uint64_t range) {
  int n_groups = 0;
  if (range <= 2 * (uint64_t) n + 65536) {
    int *table = (int *) R_alloc((size_t) range, sizeof(int));
    memset(table, 0, (size_t) range * sizeof(int));
    for (int i = 0; i < n; i++) {
      uint64_t kk = packed_key(cols, p, mult, lo, i);
      int g = table[kk];
      if (g == 0) {
        note_first(f, n_groups, i);
        g = table[kk] = ++n_groups;
      }
      id[i] = g;
    }
    return n_groups;
  }
  sfp_word_codes t;
  sfp_word_codes_init(&t);
  for (int i = 0; i < n; i++) {
    if ((i & 65535) == 65535) R_CheckUserInterrupt();
    int added, g = sfp_word_code(&t, packed_key(cols, p, mult, lo, i), &added);
    if (added) note_first(f, g - 1, i);
    id[i] = g;
  }
  return t.n;
}

/* ---- hashed rows ------------------------------------------------------------ */

/* hashes of all rows, column by column */
static void row_hashes(const sfp_key_col *cols, int p, int n, uint64_t *h) {
  for (int i = 0; i < n; i++) h[i] = 0x9e3779b97f4a7c15ULL;
  for (int k = 0; k < p; k++) {
    const sfp_key_col *c = cols + k;
    uint64_t salt = 0x9e3779b97f4a7c15ULL * (uint64_t) (k + 1);
    for (int i = 0; i < n; i++)
      h[i] = mix64(h[i] ^ (col_word(c, i) + salt + (h[i] << 6) + (h[i] >> 2)));
  }
}

/* One probing pass: rows with equal hashes (and, when full, equal words)
 * join; returns the number of groups. The group of a row is its id; the
 * slot table holds the first row of each group. */
static int probe_rows(const sfp_key_col *cols, int p, int n, const uint64_t *hh,
                      size_t size, int *id, int *first, int full) {
  int *slot = (int *) R_alloc(size, sizeof(int));
  for (size_t s = 0; s < size; s++) slot[s] = -1;
  int next = 0;
  for (int i = 0; i < n; i++) {
    size_t s = (size_t) hh[i] & (size - 1);
    for (;;) {
      int k = slot[s];
      if (k < 0) {
        slot[s] = i;
        first[next] = i;
        id[i] = ++next;
        break;
      }
      if (hh[k] == hh[i] && (!full || rows_equal(cols, p, i, k))) {
        id[i] = id[k];
        break;
      }
      s = (s + 1) & (size - 1);
    }
    if ((i & 65535) == 65535) R_CheckUserInterrupt();
  }
  return next;
}

/* every row equal, column by column, to the first row of its group */
static int verify_groups(const sfp_key_col *cols, int p, int n, const int *id,
                         const int *first) {
  for (int k = 0; k < p; k++) {
    const sfp_key_col *c = cols + k;
    for (int i = 0; i < n; i++)
      if (col_word(c, i) != col_word(c, first[id[i] - 1])) return 0;
  }
  return 1;
}

static int group_hashed(const sfp_key_col *cols, int p, int n, int *id,
                        int **first_out, int full) {
  size_t size = 16;
  while (size < 2 * (size_t) n) size <<= 1;
  uint64_t *hh = (uint64_t *) R_alloc((size_t) n, sizeof(uint64_t));
  row_hashes(cols, p, n, hh);
  int *first = (int *) R_alloc((size_t) n, sizeof(int));
  int G = probe_rows(cols, p, n, hh, size, id, first, full);
  if (!full && !verify_groups(cols, p, n, id, first)) /* a 64-bit collision */
    G = probe_rows(cols, p, n, hh, size, id, first, 1);
  if (first_out != NULL) *first_out = first;
  return G;
}

/* ---- the engine ------------------------------------------------------------- */

int sfp_group_rows(const sfp_key_col *cols, int p, int n, int *id,
                   int **first_out, int full) {
  if (n <= 0) return 0;
  if (p == 0) {
    for (int i = 0; i < n; i++) id[i] = 1;
    if (first_out != NULL) {
      *first_out = (int *) R_alloc(1, sizeof(int));
      (*first_out)[0] = 0;
    }
    return 1;
  }
  uint64_t *mult = (uint64_t *) R_alloc((size_t) p, sizeof(uint64_t));
  int *lo = (int *) R_alloc((size_t) p, sizeof(int));
  uint64_t range = 0;
  if (!full && plan_packing(cols, p, n, mult, lo, &range)) {
    first_rows f = {NULL, 1024};
    if (first_out != NULL) f.row = (int *) R_alloc(f.cap, sizeof(int));
    int G = group_packed(cols, p, n, id, &f, mult, lo, range);
    if (first_out != NULL) *first_out = f.row;
    return G;
  }
  return group_hashed(cols, p, n, id, first_out, full);
}
