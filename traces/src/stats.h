/* stats: running statistics over a stream of numbers (KeyMM trace corpus project). */
#ifndef STATS_H
#define STATS_H
#include <stddef.h>

struct stats {
    size_t n;
    double mean;
    double m2;
    double min;
    double max;
};

void stats_init(struct stats *s);
void stats_add(struct stats *s, double x);
double stats_stddev(const struct stats *s);
#endif
