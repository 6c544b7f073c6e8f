#ifndef HATO_GATEWAY_REPORT_H
#define HATO_GATEWAY_REPORT_H
/*
 * report: completion reports. On the dispatcher's database thread (never
 * the event loop), now and then: the DM jobs that ended with no report yet
 * each get one, a notice to the address their receipt went to, queued in
 * the transaction that marks the job reported (store_job_report), so that
 * of several gateways exactly one writes it.
 */
struct store;
struct hato_config;

#define REPORT_EVERY_MS 1000	/* how often the dispatcher looks */
#define REPORT_BATCH 16		/* reports written per look */

void report_sweep(struct store *st, const struct hato_config *cf);

#endif
