/* simulate.c: the records simulator behind simulate_sfp().
 *
 * One pass over the children.  For each child the kernel walks the child's
 * history -- referral, assessment with its factors, CIN plan or child
 * protection plan, periods of care made of episodes, closure, re-referral --
 * and appends rows to growable integer tables.  Dates are integer day
 * numbers (days since 1970-01-01), codes are 1-based indices into the code
 * vectors of R/simulate.R (`.sim_codes`), whose order mirrors the enums
 * below.  No strings are built here.
 *
 * Random numbers come only from R's generator (unif_rand, norm_rand,
 * exp_rand, Rf_rbinom) between GetRNGstate() and PutRNGstate(), so a seed set
 * in R gives the same records on every machine.
 *
 * Memory: table columns live in R_alloc() scratch that doubles when full (the
 * old block is left to R, which frees all of it when .Call returns), so an
 * interrupt or error long-jump leaks nothing.  At the end the columns are
 * copied into R integer vectors.
 */
#include "sfpceval.h"
#include <Rmath.h>
#include <string.h>
#include <limits.h>

/* ---- code enums: 1-based positions in .sim_codes (R/simulate.R) ---- */

/* referral_source: 1A 1B 1C 1D 2A 2B 3A-3F 4 5A-5D 6 7 8 9 10 (22 codes) */
static const double w_source[22] = {
  3, 2, 2, 1, 17, 1, 4, 6, 2, 1, 4, 4, 2, 5, 1, 2, 2, 29, 2, 5, 2, 1};
/* primary_need: N0 N1 ... N9 */
static const double w_need[10] = {2.5, 55, 3, 3, 9, 11, 2, 0.5, 5, 9};
enum { RC1 = 1, RC2, RC3, RC4, RC5, RC6, RC7, RC8, RC9 };

/* factor codes, in this order (44 codes):
 * 1A 1B 1C 2A 2B 2C 3A 3B 3C 4A 4B 4C 5A 5B 5C 6A 6B 6C 7A 8B 8C 8D 8E 8F
 * 9A 10A 11A 12A 13A 14A 15A 16A 17A 18A 19A 18B 18C 19B 19C 20 21 22A 23A
 * 24A */
#define N_FACTOR 44
#define F_9A 25
#define F_18A 34
#define F_19A 35
#define F_18B 36
#define F_18C 37
#define F_19B 38
#define F_19C 39
#define F_24A 44
static const double w_factor[N_FACTOR] = {
  2, 4, 1.2, 4, 4, 1.2,              /* 1A-2C: alcohol, drugs        */
  5.5, 7.5, 2.5,                      /* 3A-3C: domestic violence     */
  10, 12.5, 2.5,                      /* 4A-4C: mental health         */
  3, 3, 1, 3.5, 2, 0.8,               /* 5A-6C: learning disability, health */
  0.8, 0.6, 0.4, 0.4, 0.3, 0.2,       /* 7A, 8B-8F                    */
  0,                                  /* 9A: UASC, set for UASC only  */
  0.6, 1, 1.2, 0.3, 4, 1, 2, 1,       /* 10A-17A                      */
  3, 1.5,                             /* 18A 19A (to 2019-20)         */
  3, 0.3, 1.5, 0.5,                   /* 18B 18C 19B 19C (2020-21 on) */
  3, 14, 5.5, 0.6,                    /* 20 21 22A 23A                */
  2};                                 /* 24A (2021-22 on)             */
static const double w_nfactor[5] = {0.25, 0.30, 0.22, 0.15, 0.08};

/* cp_category: NEG PHY SAB EMO MUL */
static const double w_cpcat[5] = {48, 7, 4, 37, 4};

/* rne: S L P T B U */
enum { RNE_S = 1, RNE_L, RNE_P, RNE_T, RNE_B, RNE_U };
static const double w_rne_change[5] = {22, 50, 13, 10, 5}; /* L P T B U */

/* ls: C1 C2 D1 E1 V2 V3 V4 L1 L2 L3 J1 J2 J3 */
enum { LS_C1 = 1, LS_C2, LS_D1, LS_E1, LS_V2, LS_V3, LS_V4, LS_L1, LS_L2,
       LS_L3, LS_J1, LS_J2, LS_J3 };

/* place: A3 A4 A5 A6 H5 K1 K2 K3 P1 P2 P3 R1 R2 R3 R5 S1 T0 T1 T2 T3 T4
 *        U1 U2 U3 U4 U5 U6 Z1 Z11 Z12 Z13 Z14 */
enum { PL_A3 = 1, PL_A4, PL_A5, PL_A6, PL_H5, PL_K1, PL_K2, PL_K3, PL_P1,
       PL_P2, PL_P3, PL_R1, PL_R2, PL_R3, PL_R5, PL_S1, PL_T0, PL_T1, PL_T2,
       PL_T3, PL_T4, PL_U1, PL_U2, PL_U3, PL_U4, PL_U5, PL_U6, PL_Z1, PL_Z11,
       PL_Z12, PL_Z13, PL_Z14 };

/* place_provider: PR0 ... PR5 */
enum { PR0 = 1, PR1, PR2, PR3, PR4, PR5 };

/* rec: X1 E11 E12 E2 E3 E4A E4B E13 E41 E45 E46 E47 E48 E5 E6 E7 E8 E9 E14
 *      E15 E16 E17 */
enum { X1 = 1, E11, E12, E2, E3, E4A, E4B, E13, E41, E45, E46, E47, E48, E5,
       E6, E7, E8, E9, E14, E15, E16, E17 };

/* 903 category of need N1-N8 */
static const double w_cin903[8] = {63, 3, 3, 8, 5, 1, 0.2, 15};

/* ---- the parameter vector (order fixed by .sim_par_names in R) ---- */
enum {
  P_DAY0, P_DAY_END, P_A0, P_B_CPP, P_B_NOPLAN, P_P_NFA, P_P_ASSESSED,
  P_P_CPP, P_P_CIN, P_P_NOPLAN, P_P_RC8, P_P_RC9, P_P_REREF12,
  P_P_REREF_LATER, P_P_KIN, P_P_REUNIFY, P_CUT_F2021, P_CUT_F24A, P_CUT_K3,
  P_CUT_P2, P_CUT_Z11, P_ABS_CIN, P_CLA_W1, P_CLA_W2, P_CLA_D1, P_CLA_D2,
  P_CLA_D3, P_CPP_MEDIAN, P_CPP_SDLOG, P_CIN_MEDIAN, P_CIN_SDLOG,
  N_PAR
};
/* effects: cla cpp cpp_duration rereferral return kinship reunification
 * absence */
enum { E_CLA, E_CPP, E_CPPDUR, E_REREF, E_RETURN, E_KIN, E_REUNIF, E_ABS,
       N_EFF };

#define MAX_REFERRALS 8

/* ---- growable integer tables ---- */
typedef struct {
  int ncol;
  R_xlen_t n, cap;
  int *col[12];
} tbl;

static void tbl_init(tbl *t, int ncol, R_xlen_t cap) {
  t->ncol = ncol;
  t->n = 0;
  t->cap = cap < 16 ? 16 : cap;
  for (int j = 0; j < ncol; j++) t->col[j] = (int *) R_alloc(t->cap, sizeof(int));
}

/* Index of a new row (columns not yet set). */
static R_xlen_t tbl_add(tbl *t) {
  if (t->n == t->cap) {
    R_xlen_t cap = 2 * t->cap;
    for (int j = 0; j < t->ncol; j++) {
      int *x = (int *) R_alloc(cap, sizeof(int));
      memcpy(x, t->col[j], (size_t) t->n * sizeof(int));
      t->col[j] = x;
    }
    t->cap = cap;
  }
  return t->n++;
}

/* ---- random draws ---- */
static inline double expit(double x) { return 1.0 / (1.0 + exp(-x)); }
static inline double logit(double p) { return log(p / (1.0 - p)); }

/* integer uniform on [a, b] */
static inline int runif_int(int a, int b) {
  if (b <= a) return a;
  int k = a + (int) floor(unif_rand() * (double) (b - a + 1));
  return k > b ? b : k;
}

/* 1-based draw from weights w[0..k-1] (not necessarily summing to 1) */
static int draw_cat(const double *w, int k) {
  double tot = 0;
  for (int j = 0; j < k; j++) tot += w[j];
  double u = unif_rand() * tot;
  for (int j = 0; j < k; j++) {
    u -= w[j];
    if (u < 0) return j + 1;
  }
  return k;
}

static inline int rlnorm_days(double median, double sdlog) {
  double d = median * exp(sdlog * norm_rand());
  if (d < 1) d = 1;
  if (d > 20000) d = 20000;
  return (int) d;
}

/* ---- the simulation state ---- */
typedef struct {
  const double *par, *eff;
  int day_end;
  tbl ref, ass, fac, cin, cpp, cla, abs;
} sim;

/* Columns of each table. */
enum { REF_CHILD, REF_DATE, REF_SOURCE, REF_NEED, REF_CLOSE, REF_REASON,
       REF_NFA, REF_NCOL };
enum { ASS_REF, ASS_START, ASS_END, ASS_NCOL };
enum { FAC_ASS, FAC_CODE, FAC_NCOL };
enum { CIN_REF, CIN_START, CIN_END, CIN_NCOL };
enum { CPP_REF, CPP_START, CPP_END, CPP_INIT, CPP_LATEST, CPP_NPREV,
       CPP_NCOL };
enum { CLA_CHILD, CLA_DECOM, CLA_DEC, CLA_RNE, CLA_LS, CLA_CIN, CLA_PLACE,
       CLA_PROV, CLA_REC, CLA_NCOL };
enum { ABS_CHILD, ABS_AY, ABS_TERM, ABS_POSS, ABS_UNAUTH, ABS_NCOL };

static inline int na_if_after(int day, int day_end) {
  return day > day_end ? NA_INTEGER : day;
}

/* Assessment factors: 1-5 codes drawn without replacement, the 2017-20 or
 * 2020-21+ codes for child sexual/criminal exploitation by date, 24A only
 * from its schema year, 9A for UASC. */
static void emit_factors(sim *S, int ass_row, int day, int uasc) {
  double w[N_FACTOR];
  memcpy(w, w_factor, sizeof(w));
  if (day >= (int) S->par[P_CUT_F2021]) {
    w[F_18A - 1] = 0; w[F_19A - 1] = 0;
  } else {
    w[F_18B - 1] = 0; w[F_18C - 1] = 0; w[F_19B - 1] = 0; w[F_19C - 1] = 0;
  }
  if (day < (int) S->par[P_CUT_F24A]) w[F_24A - 1] = 0;
  int k = draw_cat(w_nfactor, 5);
  if (uasc) {
    R_xlen_t r = tbl_add(&S->fac);
    S->fac.col[FAC_ASS][r] = ass_row;
    S->fac.col[FAC_CODE][r] = F_9A;
    k--;
  }
  for (int j = 0; j < k; j++) {
    int f = draw_cat(w, N_FACTOR);
    w[f - 1] = 0;
    R_xlen_t r = tbl_add(&S->fac);
    S->fac.col[FAC_ASS][r] = ass_row;
    S->fac.col[FAC_CODE][r] = f;
  }
}

/* Legal status at entry to care, by age. */
static int draw_ls_entry(double age, int uasc) {
  if (uasc) return LS_V2;
  if (age < 1) {
    static const double w[4] = {55, 30, 8, 7};          /* C1 V2 L2 L1 */
    static const int c[4] = {LS_C1, LS_V2, LS_L2, LS_L1};
    return c[draw_cat(w, 4) - 1];
  }
  if (age < 10) {
    static const double w[4] = {45, 42, 5, 8};
    static const int c[4] = {LS_C1, LS_V2, LS_L2, LS_L1};
    return c[draw_cat(w, 4) - 1];
  }
  static const double w[6] = {20, 62, 1, 10, 3, 4};      /* C1 V2 L2 L1 J1 J2 */
  static const int c[6] = {LS_C1, LS_V2, LS_L2, LS_L1, LS_J1, LS_J2};
  return c[draw_cat(w, 6) - 1];
}

/* Next legal status on a legal change. */
static int next_ls(int ls, double age) {
  switch (ls) {
  case LS_C1: return LS_C2;
  case LS_V2: return unif_rand() < 0.7 ? LS_C1 : LS_C2;
  case LS_L1: case LS_L2: case LS_L3: return unif_rand() < 0.6 ? LS_C1 : LS_V2;
  case LS_J1: case LS_J2: case LS_J3: return LS_V2;
  case LS_C2: return age < 5 ? LS_E1 : LS_C2;
  default: return ls;
  }
}

static int place_on(const sim *S, int pl, int day);

/* Non-kinship placement by age, with the code list in force on `day`. */
static int draw_place_nonkin(const sim *S, double age, int uasc, int day) {
  int pl;
  if (uasc) {
    static const double w[3] = {35, 50, 15};
    static const int c[3] = {PL_H5, PL_U6, PL_K2};
    pl = c[draw_cat(w, 3) - 1];
  } else if (age < 5) {
    static const double w[7] = {72, 7, 3, 7, 8, 1, 2};
    static const int c[7] = {PL_U6, PL_U4, PL_U5, PL_P1, PL_R3, PL_T0, PL_Z1};
    pl = c[draw_cat(w, 7) - 1];
  } else if (age < 13) {
    static const double w[8] = {70, 7, 2, 6, 10, 2, 1, 2};
    static const int c[8] = {PL_U6, PL_U4, PL_U5, PL_P1, PL_K2, PL_S1, PL_R1,
                             PL_Z1};
    pl = c[draw_cat(w, 8) - 1];
  } else {
    static const double w[12] = {45, 5, 22, 10, 5, 2, 2, 3, 2, 2, 1, 1};
    static const int c[12] = {PL_U6, PL_U4, PL_K2, PL_H5, PL_P1, PL_K1, PL_R5,
                              PL_S1, PL_R1, PL_Z1, PL_R2, PL_P2};
    pl = c[draw_cat(w, 12) - 1];
    if (pl == PL_H5 && age < 16) pl = PL_K2;
  }
  return place_on(S, pl, day);
}

/* The placement code list in force on `day`: H5 became K3 in 2024-25, P2
 * was withdrawn on 28/10/2023, Z1 split into Z11-Z14 in 2025-26. */
static int place_on(const sim *S, int pl, int day) {
  if (pl == PL_P2 && day > (int) S->par[P_CUT_P2]) pl = PL_H5;
  if (pl == PL_H5 && day >= (int) S->par[P_CUT_K3]) pl = PL_K3;
  if (pl == PL_Z1 && day >= (int) S->par[P_CUT_Z11]) pl = PL_Z11 + runif_int(0, 3);
  return pl;
}

static int draw_kin(void) {
  static const double w[3] = {10, 5, 85};
  return PL_U1 + draw_cat(w, 3) - 1;
}

static int draw_provider(int place) {
  if (place == PL_P1) return PR0;
  if (place >= PL_U1 && place <= PL_U3) return unif_rand() < 0.92 ? PR1 : PR2;
  if (place >= PL_U4 && place <= PL_U6) {
    static const double w[4] = {55, 5, 35, 5};
    static const int c[4] = {PR1, PR2, PR4, PR5};
    return c[draw_cat(w, 4) - 1];
  }
  if (place == PL_R2 || place == PL_R5) return PR3;
  if (place >= PL_A3 && place <= PL_A6) return unif_rand() < 0.7 ? PR1 : PR5;
  static const double w[4] = {20, 5, 70, 5};
  static const int c[4] = {PR1, PR2, PR4, PR5};
  return c[draw_cat(w, 4) - 1];
}

/* A placement change: same carer type (T, U) moves within the foster codes,
 * a new carer (P, B) draws afresh. */
static int change_place(const sim *S, int place, double age, int uasc,
                        int day, int same_carer) {
  if (same_carer) {
    if (place == PL_U3) return PL_U1;
    if (place == PL_U6) return PL_U4;
    if (place == PL_U4) return PL_U5;
    return place;
  }
  int pl = draw_place_nonkin(S, age, uasc, day);
  return pl == place ? (place == PL_U6 ? PL_U4 : PL_U6) : pl;
}

/* Reason a period of care ends at 18. */
static int draw_rec18(void) {
  static const double w[4] = {45, 25, 15, 15};
  static const int c[4] = {E8, E17, E9, E5};
  return c[draw_cat(w, 4) - 1];
}

/* One period of care from `decom`: first episode rne S, then up to three
 * contiguous changes (X1 in between), the last one ending with the reason
 * ceased, or open at the end of the data.  Returns the end of the period
 * (NA_INTEGER if open) and its reason ceased in *rec_out. */
static int emit_period(sim *S, int child, int decom, int b18, double age,
                       int uasc, int treated, int *rec_out) {
  const double *eff = S->eff, *par = S->par;
  int day_end = S->day_end;
  int ls = draw_ls_entry(age, uasc);
  double kin_lp = logit(par[P_P_KIN]) + (age < 1 ? 0.1 : age >= 13 ? -0.6 : 0) +
                  (treated ? eff[E_KIN] : 0);
  int place = (!uasc && unif_rand() < expit(kin_lp)) ? draw_kin()
              : draw_place_nonkin(S, age, uasc, decom);
  int prov = draw_provider(place);
  int cin = uasc ? 8 : draw_cat(w_cin903, 8);

  /* how and when the period ends */
  int rec, dur, longterm = 0, adoption = 0;
  double ru_lp = logit(par[P_P_REUNIFY]) + (age >= 10 ? -0.3 : 0) +
                 (treated ? eff[E_REUNIF] : 0);
  if (!uasc && unif_rand() < expit(ru_lp)) {
    rec = unif_rand() < 0.85 ? E4A : E4B;
    dur = rlnorm_days(120, 1.0);
  } else if (age < 5) {
    static const double w[5] = {35, 30, 5, 3, 27};
    switch (draw_cat(w, 5)) {
    case 1: rec = unif_rand() < 0.5 ? E11 : E12; dur = rlnorm_days(650, 0.35);
            adoption = 1; break;
    case 2: rec = E45 + runif_int(0, 3); dur = rlnorm_days(480, 0.5); break;
    case 3: rec = E41; dur = rlnorm_days(400, 0.5); break;
    case 4: rec = E13; dur = rlnorm_days(300, 0.8); break;
    default: rec = E8; dur = 0; longterm = 1;
    }
  } else if (age < 14) {
    static const double w[5] = {25, 6, 6, 5, 58};
    switch (draw_cat(w, 5)) {
    case 1: rec = E45 + runif_int(0, 3); dur = rlnorm_days(500, 0.5); break;
    case 2: rec = E41; dur = rlnorm_days(450, 0.5); break;
    case 3: rec = E13; dur = rlnorm_days(300, 0.8); break;
    case 4: rec = E8; dur = rlnorm_days(200, 1.0); break;
    default: rec = E8; dur = 0; longterm = 1;
    }
  } else {
    static const double w[11] = {15, 6, 3, 3, 2, 2, 1, 2, 1, 0.2, 64.8};
    static const int c[10] = {E8, E13, E3, E14, E6, E15, E16, E7, E9, E2};
    int k = draw_cat(w, 11);
    if (k <= 10) {
      rec = c[k - 1];
      dur = rlnorm_days(150, 1.0);
      if (rec == E15 && !uasc) rec = E8;
    } else {
      rec = E8; dur = 0; longterm = 1;
    }
  }
  int dec = longterm ? b18 : decom + dur;
  if (dec >= b18) {
    dec = b18;
    rec = draw_rec18();
    adoption = 0;
  }
  if (dec <= decom) dec = decom + 1;
  int open = dec > day_end;
  int last = open ? day_end : dec;

  /* changes within the period */
  int chg[3], k = 0;
  int span = last - decom;
  if (span >= 2) {
    int kk = (int) Rf_rpois((double) span / 365.0 * 0.9);
    if (adoption && kk < 1) kk = 1;
    if (kk > 3) kk = 3;
    if (kk > span - 1) kk = span - 1;
    for (int j = 0; j < kk; j++) chg[j] = decom + 1 + runif_int(0, span - 2);
    /* sort and drop ties */
    for (int a = 1; a < kk; a++)
      for (int b = a; b > 0 && chg[b] < chg[b - 1]; b--) {
        int tmp = chg[b]; chg[b] = chg[b - 1]; chg[b - 1] = tmp;
      }
    for (int j = 0; j < kk; j++)
      if (k == 0 || chg[j] != chg[k - 1]) chg[k++] = chg[j];
  }

  int start = decom;
  for (int e = 0; e <= k; e++) {
    int rne = RNE_S;
    if (e > 0) {
      rne = RNE_L + draw_cat(w_rne_change, 5) - 1;
      double age_e = age + (start - decom) / 365.25;
      if (rne == RNE_L || rne == RNE_B || rne == RNE_U) ls = next_ls(ls, age_e);
      if (rne == RNE_P || rne == RNE_B) {
        place = change_place(S, place, age_e, uasc, start, 0);
        prov = draw_provider(place);
      } else if (rne == RNE_T || rne == RNE_U) {
        place = change_place(S, place, age_e, uasc, start, 1);
      }
      if (adoption && e == k) {
        /* placed for adoption under a placement order */
        rne = RNE_B;
        ls = LS_E1;
        place = (place >= PL_U1 && place <= PL_U6) ? PL_A5 : PL_A6;
        prov = draw_provider(place);
      }
    }
    place = place_on(S, place, start);
    int end_e = e < k ? chg[e] : (open ? NA_INTEGER : dec);
    R_xlen_t r = tbl_add(&S->cla);
    S->cla.col[CLA_CHILD][r] = child;
    S->cla.col[CLA_DECOM][r] = start;
    S->cla.col[CLA_DEC][r] = end_e;
    S->cla.col[CLA_RNE][r] = rne;
    S->cla.col[CLA_LS][r] = ls;
    S->cla.col[CLA_CIN][r] = cin;
    S->cla.col[CLA_PLACE][r] = place;
    S->cla.col[CLA_PROV][r] = prov;
    S->cla.col[CLA_REC][r] = e < k ? X1 : (open ? NA_INTEGER : rec);
    if (e < k) start = chg[e];
  }
  *rec_out = open ? NA_INTEGER : rec;
  return open ? NA_INTEGER : dec;
}

/* A CIN plan of referral row ref_row from start to end (end NA when it
 * falls after the data). */
static void emit_cin_plan(sim *S, int ref_row, int start, int end) {
  R_xlen_t r = tbl_add(&S->cin);
  S->cin.col[CIN_REF][r] = ref_row;
  S->cin.col[CIN_START][r] = start;
  S->cin.col[CIN_END][r] = na_if_after(end, S->day_end);
}

/* Short breaks: a disabled child's V3 single breaks or one V4 series,
 * each its own period (rne S), none overlapping. */
static void emit_short_breaks(sim *S, int child, int lo, int hi) {
  if (hi - lo < 30) return;
  int single_series = unif_rand() < 0.3;
  int day = lo + runif_int(0, (hi - lo) / 3);
  int nb = single_series ? 1 : 1 + (int) Rf_rpois(3.0);
  for (int j = 0; j < nb && day < hi; j++) {
    int dur = single_series ? runif_int(30, 180) : runif_int(1, 7);
    int dec = day + dur;
    R_xlen_t r = tbl_add(&S->cla);
    S->cla.col[CLA_CHILD][r] = child;
    S->cla.col[CLA_DECOM][r] = day;
    S->cla.col[CLA_DEC][r] = na_if_after(dec, S->day_end);
    S->cla.col[CLA_RNE][r] = RNE_S;
    S->cla.col[CLA_LS][r] = single_series ? LS_V4 : LS_V3;
    S->cla.col[CLA_CIN][r] = 2;
    static const double w[3] = {50, 30, 20};
    static const int c[3] = {PL_K2, PL_U6, PL_U4};
    S->cla.col[CLA_PLACE][r] = c[draw_cat(w, 3) - 1];
    S->cla.col[CLA_PROV][r] = unif_rand() < 0.6 ? PR1 : PR4;
    S->cla.col[CLA_REC][r] = dec > S->day_end ? NA_INTEGER : E8;
    if (dec > S->day_end) break;
    day = dec + 7 + (int) (exp_rand() * 60);
  }
}

/* ffi_simulate_sfp(ci, cd, la_go_live, traj, qday, par, eff, terms)
 *   ci:    list of n-long integer vectors: la (0-based LA index), ref0 (day
 *          of first referral), dob (day of birth), b18 (day of 18th
 *          birthday), uasc (0/1), prior_cpp (CPPs before the data start),
 *          short_break (0/1), part_time (0/1)
 *   cd:    list of n-long double vectors: eta (child's CLA logit offset:
 *          age, UASC and LA random effect), abs_logit (child's logit rate
 *          of unauthorised absence)
 *   la_go_live: integer, one per LA, day of go-live or NA (never treated)
 *   traj:  double matrix n_la x n_quarter, LA x quarter logit shift
 *   qday:  integer, quarter index (0-based) of day par[P_DAY0] + j
 *   par:   double[N_PAR], the model constants (see the enum)
 *   eff:   double[N_EFF], the true effects
 *   terms: list of integer vectors: start, end, ay (1-based academic year),
 *          term (1-based code), sessions -- one element per school term,
 *          sorted by start
 * Invariants (checked in R): ref0 >= par[P_DAY0], all days <= the end of
 * qday, la in [0, n_la), dob < b18.
 * Returns a list of seven tables (lists of integer columns) in the order
 * referrals, assessments, assessment_factors, cin_plans, cp_plans,
 * cla_episodes, absence; row references are 1-based.
 */
SEXP ffi_simulate_sfp(SEXP ci, SEXP cd, SEXP la_go_live, SEXP traj,
                      SEXP qday, SEXP par, SEXP eff, SEXP terms) {
  sfp_check_simulate(ci, cd, la_go_live, traj, qday, par, N_PAR, eff, N_EFF, terms);

  R_xlen_t n = XLENGTH(VECTOR_ELT(ci, 0));
  const int *c_la = INTEGER_RO(VECTOR_ELT(ci, 0));
  const int *c_ref0 = INTEGER_RO(VECTOR_ELT(ci, 1));
  const int *c_dob = INTEGER_RO(VECTOR_ELT(ci, 2));
  const int *c_b18 = INTEGER_RO(VECTOR_ELT(ci, 3));
  const int *c_uasc = INTEGER_RO(VECTOR_ELT(ci, 4));
  const int *c_prior = INTEGER_RO(VECTOR_ELT(ci, 5));
  const int *c_sb = INTEGER_RO(VECTOR_ELT(ci, 6));
  const int *c_pt = INTEGER_RO(VECTOR_ELT(ci, 7));
  const double *c_eta = REAL_RO(VECTOR_ELT(cd, 0));
  const double *c_abs = REAL_RO(VECTOR_ELT(cd, 1));
  const int *gl = INTEGER_RO(la_go_live);
  int n_la = (int) XLENGTH(la_go_live);
  const double *tr = REAL_RO(traj);
  const int *qd = INTEGER_RO(qday);
  R_xlen_t n_qday = XLENGTH(qday);
  const double *p = REAL_RO(par);
  const double *e = REAL_RO(eff);
  int n_terms = (int) XLENGTH(VECTOR_ELT(terms, 0));
  const int *t_start = INTEGER_RO(VECTOR_ELT(terms, 0));
  const int *t_end = INTEGER_RO(VECTOR_ELT(terms, 1));
  const int *t_ay = INTEGER_RO(VECTOR_ELT(terms, 2));
  const int *t_code = INTEGER_RO(VECTOR_ELT(terms, 3));
  const int *t_sess = INTEGER_RO(VECTOR_ELT(terms, 4));

  sim S;
  S.par = p;
  S.eff = e;
  int day0 = (int) p[P_DAY0];
  S.day_end = (int) p[P_DAY_END];
  int day_end = S.day_end;
  tbl_init(&S.ref, REF_NCOL, n + n / 2);
  tbl_init(&S.ass, ASS_NCOL, n + n / 4);
  tbl_init(&S.fac, FAC_NCOL, 3 * n);
  tbl_init(&S.cin, CIN_NCOL, n / 2);
  tbl_init(&S.cpp, CPP_NCOL, n / 4);
  tbl_init(&S.cla, CLA_NCOL, n / 5);
  tbl_init(&S.abs, ABS_NCOL, 4 * n);

  /* the post-assessment outcome shares other than CPP */
  double w_after[4] = {p[P_P_CIN], p[P_P_NOPLAN], p[P_P_RC8], p[P_P_RC9]};
  double lp_cpp0 = logit(p[P_P_CPP]);
  double d1 = p[P_CLA_D1], d2 = p[P_CLA_D2], d3 = p[P_CLA_D3];

  GetRNGstate();
  for (R_xlen_t i = 0; i < n; i++) {
    if ((i & 65535) == 65535) sfp_check_interrupt_rng();
    int la = c_la[i], b18 = c_b18[i], dob = c_dob[i], uasc = c_uasc[i];
    int golive = gl[la] == NA_INTEGER ? INT_MAX : gl[la];
    int t = c_ref0[i];
    int n_cpp_hist = c_prior[i];
    int first_treated_ref = INT_MAX; /* first referral on/after go-live */
    int nref = 0;
    int ci_ = (int) i + 1;

    if (c_sb[i]) {
      int lo = t - 365 < day0 ? day0 : t - 365;
      if (lo < dob) lo = dob;
      int hi = b18 - 1 < day_end ? b18 - 1 : day_end;
      emit_short_breaks(&S, ci_, lo, hi);
    }

    while (t <= day_end && t < b18 && nref < MAX_REFERRALS) {
      nref++;
      int treated = t >= golive;
      if (treated && t < first_treated_ref) first_treated_ref = t;
      R_xlen_t r = tbl_add(&S.ref);
      int ref_row = (int) r + 1;
      S.ref.col[REF_CHILD][r] = ci_;
      S.ref.col[REF_DATE][r] = t;
      S.ref.col[REF_SOURCE][r] = draw_cat(w_source, 22);
      S.ref.col[REF_NEED][r] = draw_cat(w_need, 10);
      int nfa = 0, closure, reason = RC7, hadplan = 0;

      if (unif_rand() < p[P_P_NFA]) {
        nfa = 1;
        closure = t + runif_int(0, 2);
      } else if (unif_rand() >= p[P_P_ASSESSED]) {
        closure = t + runif_int(1, 30);
      } else {
        int as = t + (int) fmin(14.0, exp_rand() * 3.0);
        int ae = as + 1 + (int) (44.0 * pow(unif_rand(), 1.6));
        R_xlen_t a = tbl_add(&S.ass);
        S.ass.col[ASS_REF][a] = ref_row;
        S.ass.col[ASS_START][a] = as;
        S.ass.col[ASS_END][a] = na_if_after(ae, day_end);
        emit_factors(&S, (int) a + 1, ae, uasc);

        /* outcome of the assessment: 0 CPP, 1 CIN plan, 2 open without a
         * plan, 3 RC8, 4 RC9 */
        int cls;
        if (unif_rand() < expit(lp_cpp0 + (treated ? e[E_CPP] : 0))) {
          cls = 0;
        } else {
          cls = draw_cat(w_after, 4);
        }
        if (cls >= 3) {
          closure = ae + runif_int(0, 3);
          reason = cls == 3 ? RC8 : RC9;
        } else {
          /* becoming looked after */
          int qi = (int) (t - day0) < n_qday ? qd[t - day0] : qd[n_qday - 1];
          double lp = p[P_A0] + c_eta[i] + tr[la + (R_xlen_t) n_la * qi] +
                      (cls == 0 ? p[P_B_CPP] : cls == 2 ? p[P_B_NOPLAN] : 0) +
                      (treated ? e[E_CLA] : 0);
          int cla_day = NA_INTEGER;
          if (!c_sb[i] && unif_rand() < expit(lp)) {
            double u = unif_rand();
            int delay;
            if (u < p[P_CLA_W1]) delay = runif_int(1, (int) d1);
            else if (u < p[P_CLA_W1] + p[P_CLA_W2])
              delay = runif_int((int) d1 + 1, (int) d2);
            else delay = runif_int((int) d2 + 1, (int) d3);
            cla_day = t + delay;
            if (cla_day < dob) cla_day = dob;
          }
          int plan_end;
          if (cls == 0) {
            int cs = ae + runif_int(3, 40);
            if (cla_day != NA_INTEGER && cla_day <= cs)
              cla_day = cs + runif_int(1, 30);
            int dur = rlnorm_days(p[P_CPP_MEDIAN], p[P_CPP_SDLOG]);
            if (treated) dur = (int) fmax(1.0, dur * exp(e[E_CPPDUR]));
            int ce = cs + dur;
            if (cla_day != NA_INTEGER && ce > cla_day) ce = cla_day;
            R_xlen_t c = tbl_add(&S.cpp);
            S.cpp.col[CPP_REF][c] = ref_row;
            S.cpp.col[CPP_START][c] = cs;
            S.cpp.col[CPP_END][c] = na_if_after(ce, day_end);
            int cat = draw_cat(w_cpcat, 5);
            S.cpp.col[CPP_INIT][c] = cat;
            S.cpp.col[CPP_LATEST][c] = unif_rand() < 0.85 ? cat : draw_cat(w_cpcat, 5);
            S.cpp.col[CPP_NPREV][c] = n_cpp_hist;
            n_cpp_hist++;
            plan_end = ce;
            if ((cla_day == NA_INTEGER || cla_day > ce + 1) && unif_rand() < 0.6) {
              int se = ce + rlnorm_days(120, 0.6);
              if (cla_day != NA_INTEGER && se > cla_day) se = cla_day;
              emit_cin_plan(&S, ref_row, ce, se);
              plan_end = se;
            }
            hadplan = 1;
          } else if (cls == 1) {
            int ss = ae + runif_int(0, 14);
            plan_end = ss;
            if (cla_day == NA_INTEGER || cla_day > ss) {
              int se = ss + rlnorm_days(p[P_CIN_MEDIAN], p[P_CIN_SDLOG]);
              if (cla_day != NA_INTEGER && se > cla_day) se = cla_day;
              emit_cin_plan(&S, ref_row, ss, se);
              plan_end = se;
              hadplan = 1;
            }
          } else {
            plan_end = ae + runif_int(14, 90);
          }
          if (cla_day != NA_INTEGER && cla_day <= day_end && cla_day < b18) {
            int rec;
            int dec = emit_period(&S, ci_, cla_day, b18,
                                  (cla_day - dob) / 365.25, uasc, treated, &rec);
            if (dec == NA_INTEGER) {
              closure = NA_INTEGER;
            } else {
              closure = dec + runif_int(0, 30);
              switch (rec) {
              case E11: case E12: reason = RC1; break;
              case E41: reason = RC3; break;
              case E45: case E46: case E47: case E48: reason = RC4; break;
              case E2: reason = RC2; break;
              case E3: reason = RC5; break;
              case E5: reason = RC6; break;
              default: reason = RC7;
              }
            }
          } else {
            closure = plan_end + runif_int(0, 14);
          }
        }
      }
      if (closure == NA_INTEGER || closure > day_end) {
        closure = NA_INTEGER;
        reason = NA_INTEGER;
      }
      S.ref.col[REF_CLOSE][r] = closure;
      S.ref.col[REF_REASON][r] = reason;
      S.ref.col[REF_NFA][r] = nfa;
      if (closure == NA_INTEGER) break;

      /* re-referral */
      double shift = treated ? (hadplan ? e[E_RETURN] : e[E_REREF]) : 0;
      int next = INT_MAX;
      if (closure - t < 330 &&
          unif_rand() < expit(logit(p[P_P_REREF12]) + shift)) {
        next = closure + 1 + runif_int(0, t + 364 - closure - 1);
      } else if (unif_rand() < expit(logit(p[P_P_REREF_LATER]) + shift)) {
        int from = closure + 1 > t + 365 ? closure + 1 : t + 365;
        next = from + (int) (exp_rand() * 500.0);
      }
      if (next == INT_MAX) break;
      t = next;
    }

    /* school terms: age 4-15 on 31 August, from a year before the first
     * referral to two years after, ending by the end of the data */
    int lo = c_ref0[i] - 365, hi = c_ref0[i] + 730;
    for (int k = 0; k < n_terms; k++) {
      int ts = t_start[k];
      if (ts < lo) continue;
      if (ts > hi || t_end[k] > day_end) break;
      /* age on 31 August before the academic year: ay start is 1 September */
      double age_aug = (ts - dob) / 365.25;
      if (t_code[k] == 2) age_aug -= 0.34;
      else if (t_code[k] == 3) age_aug -= 0.62;
      if (age_aug < 4 || age_aug >= 16) continue;
      int poss = t_sess[k] - runif_int(0, 6);
      if (c_pt[i]) poss /= 2;
      double rate = expit(c_abs[i] + (ts >= c_ref0[i] ? p[P_ABS_CIN] : 0));
      if (ts >= first_treated_ref) rate += e[E_ABS] / 100.0;
      if (rate < 0) rate = 0;
      if (rate > 1) rate = 1;
      /* now and then the NPD splits the summer term into "summer" (first
       * half) and "summer6th" (the sixth half-term) */
      int split = t_code[k] == 3 && unif_rand() < 0.1;
      int poss1 = split ? (int) (poss * 0.55) : poss;
      for (int h = 0; h <= split; h++) {
        int ph = h == 0 ? poss1 : poss - poss1;
        R_xlen_t r = tbl_add(&S.abs);
        S.abs.col[ABS_CHILD][r] = ci_;
        S.abs.col[ABS_AY][r] = t_ay[k];
        S.abs.col[ABS_TERM][r] = h == 0 ? t_code[k] : 4;
        S.abs.col[ABS_POSS][r] = ph;
        S.abs.col[ABS_UNAUTH][r] = (int) Rf_rbinom((double) ph, rate);
      }
    }
  }
  PutRNGstate();

  /* copy out */
  tbl *tabs[7] = {&S.ref, &S.ass, &S.fac, &S.cin, &S.cpp, &S.cla, &S.abs};
  SEXP out = PROTECT(Rf_allocVector(VECSXP, 7));
  for (int k = 0; k < 7; k++) {
    tbl *t = tabs[k];
    SEXP tab = Rf_allocVector(VECSXP, t->ncol);
    SET_VECTOR_ELT(out, k, tab);
    for (int j = 0; j < t->ncol; j++) {
      SEXP col = Rf_allocVector(INTSXP, t->n);
      SET_VECTOR_ELT(tab, j, col);
      if (t->n) memcpy(INTEGER(col), t->col[j], (size_t) t->n * sizeof(int));
    }
  }
  UNPROTECT(1);
  return out;
}
