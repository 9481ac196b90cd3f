/* Update jobs and what the server pushes to devices (jobs.c, push.c).
 *
 * Three files, three concerns. ota.c (public, fleetkey/server.h) holds the pure decisions of
 * OTA delivery: image check, target state machine, next request; no I/O, so that
 * test_server_ota.c tests them without sockets. jobs.c holds the server's jobs as state with
 * I/O: the list of jobs, each saved as ota_dir/j-NNNNNN.json (written when accepted, then at
 * most once a second while it changes, and at shutdown) and loaded back at start; target
 * state changes (log, metrics, audit); and the view of the OTA-key rotation read from the
 * inventory, which gates key pushes and is confirmed from job results. Rotation jobs will join
 * it. push.c is the per-connection OTA channel: at most one outstanding request, chosen by
 * fk_ota_next, and what each response, time-out or close does to the job. Service thread
 * only. */
#ifndef FK_SERVER_JOBS_INTERNAL_H
#define FK_SERVER_JOBS_INTERNAL_H

#include "server_internal.h"

#include <cjson/cJSON.h>

/* ---- jobs.c ---------------------------------------------------------------------------- */

/* in (a device-supplied string) made safe for one log line in out: printable ASCII only. */
const char *fk_srv_log_safe(const char *in, char *out, size_t size);

/* Re-reads the rotation state (srv->rot*) when a new audit row may have changed it; on a
 * database error the previous view stays. */
void fk_srv_rot_refresh(struct fk_server *srv);
/* Does the report list fpr (under NVS key name, or under any name when name is NULL)? */
int fk_srv_reports_key(const struct fk_wss_ota *o, const char *name, const char *fpr);
/* Records that device id holds the rotation's new key (firmware 0) or runs new-key-only
 * firmware (firmware 1); once per fact, failures logged. */
void fk_srv_rot_confirm(struct fk_server *srv, const char *id, int firmware);
/* 1 when the device's credential (kind, fpr) is "active" in the inventory (then
 * fk_rotation_confirm has nothing to do), 0 when not, -1 on error. */
int fk_srv_cred_active(struct fk_server *srv, const char *id, const char *kind, const char *fpr);

/* Appends an audit row kind about target t of job, by actor; failures logged. */
void fk_srv_audit_target(struct fk_server *srv, const struct ota_job *job,
                         const struct fk_ota_target *t, const char *kind, const char *actor);

/* The JSON of a job (what GET /api/ota[/JOB] answers and the job file holds); detail adds the
 * per-device array. NULL only when out of memory. */
cJSON *fk_srv_job_json(const struct ota_job *j, int detail);
/* A JSON array of the fingerprints of set. */
cJSON *fk_srv_fprs_json(const struct fk_ota_fprs *set);

/* Writes the job file now (atomically); a failure is logged. */
void fk_srv_job_save(struct fk_server *srv, const struct ota_job *job);
/* Writes the jobs changed since their last write. */
void fk_srv_jobs_save_dirty(struct fk_server *srv);
/* Adds job to srv->jobs (taken on success). 0, or -1 out of memory. */
int fk_srv_job_append(struct fk_server *srv, struct ota_job *job);
/* Closes the spool file and frees job. NULL-safe. */
void fk_srv_job_free(struct ota_job *job);
/* At start: loads every saved job in id order (a bad one is logged and left on disk) and sets
 * srv->next_job above the highest id seen. */
void fk_srv_jobs_load(struct fk_server *srv);

/* Target t of job changed state from was: timestamp, log, count, audit, rotation firmware
 * confirmation; marks the job dirty. */
void fk_srv_target_changed(struct fk_server *srv, struct ota_job *job, struct fk_ota_target *t,
                           enum fk_ota_tstate was);
/* The first job (in creation order) with a non-final target for id, or NULL. */
struct fk_ota_target *fk_srv_find_target(struct fk_server *srv, const char *id,
                                         struct ota_job **jobp);
/* Applies a report (hello or status "ota") to every target of s's device, then sets
 * s->target / s->job to its current one. */
void fk_srv_apply_report(struct session *s, const struct fk_wss_ota *ota);

/* ---- push.c ---------------------------------------------------------------------------- */

/* Sends s the next request, if any is due and none is outstanding. 0, or -1 when the message
 * could not be queued (the caller closes). */
int fk_srv_push_next(struct session *s);
/* A response matching s->pending (already cleared). */
void fk_srv_push_response(struct session *s, const struct fk_wss_msg *m);
/* s->pending went unanswered for 30 s (already cleared). */
void fk_srv_push_timeout(struct session *s);
/* s is closing: a transfer in flight goes back to the queue. */
void fk_srv_push_closed(struct session *s);
/* After s's hello (s->ota set): supersedes older sessions of the device, updates its targets,
 * confirms a delivered key, decides whether to ask status first. */
void fk_srv_hello_ota(struct session *s);

#endif
