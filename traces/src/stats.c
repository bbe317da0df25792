/* stats.c: Welford's online mean and variance. */
#include "stats.h"
#include <math.h>

void stats_init(struct stats *s) {
    s->n = 0;
    s->mean = s->m2 = 0.0;
    s->min = INFINITY;
    s->max = -INFINITY;
}

void stats_add(struct stats *s, double x) {
    s->n++;
    double d = x - s->mean;
    s->mean += d / (double)s->n;
    s->m2 += d * (x - s->mean);
    if (x < s->min) s->min = x;
    if (x > s->max) s->max = x;
}

double stats_stddev(const struct stats *s) {
    return s->n > 1 ? sqrt(s->m2 / (double)(s->n - 1)) : 0.0;
}
