/*
 * instance.h - everything ingest extracts from one parsed instance: the
 * identity, the attributes the index matches on and returns (UTF-8), the
 * instance's DICOM JSON, the study- and series-level JSON subsets, and the
 * layout blob. Computed once at ingest (and by reindex), never on reads.
 *
 * Owns: nothing beyond struct inst (strings live in the dcm_file's arena,
 * buffers are released by inst_release). Must not: touch files or the index.
 */
#ifndef YY_INSTANCE_H
#define YY_INSTANCE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "dicom/json.h"
#include "dicom/layout.h"

struct dcm_file;

struct inst {
    /* identity: validated UIDs */
    const char *study_uid, *series_uid, *sop_uid, *sop_class_uid, *ts_uid;
    /* patient level (UTF-8; NULL when absent) */
    const char *patient_id, *issuer_of_patient_id, *patient_name, *patient_birth_date,
        *patient_sex;
    /* study level */
    const char *study_date, *study_time, *accession_number, *referring_physician_name,
        *study_description, *study_id, *institution_name, *charset;
    /* series level */
    const char *modality, *series_description, *body_part, *series_date, *series_time,
        *pps_start_date, *pps_start_time, *frame_of_reference_uid, *station_name;
    bool has_series_number;
    long series_number;
    /* instance level */
    bool has_instance_number;
    long instance_number;
    uint32_t n_frames;
    uint16_t rows, cols;
    const char *content_date, *content_time;

    struct json_out json;   /* instance DICOM JSON with BulkDataURI marks */
    struct buf study_json;  /* study + patient level attributes (JSON object) */
    struct buf series_json; /* series level attributes (JSON object) */
    struct buf layout_blob; /* layout_encode() */
    struct layout layout;
};

/* Why an instance was refused, as the failure reasons of PS3.4 (FailureReason,
 * 0008,1197) plus a human-readable text in err. */
enum inst_status {
    INST_OK = 0,
    INST_BAD_UID = 0xA900,    /* Data Set does not match SOP Class / bad identity */
    INST_CANNOT_UNDERSTAND = 0xC000,
};

/* Extracts everything from f. src: the file's bytes (layout.h; may be
 * NULL). Returns 0; -EBADMSG with *status and err set when the object
 * cannot be stored (missing or invalid UIDs); -ENOMEM / -E2BIG. */
int inst_from_file(const struct dcm_file *f, const struct file_bytes *src, struct inst *out,
                   enum inst_status *status, char *err, size_t err_cap);
void inst_release(struct inst *in);

/* True when tag belongs to the study (and patient) level / series level
 * subsets kept for QIDO (PS3.18 table 10.6.3-3, 10.6.3-4, PS3.4 C.6.1.1). */
bool inst_is_study_tag(uint32_t tag);
bool inst_is_series_tag(uint32_t tag);

/* True for a syntactically valid UID (PS3.5 9.1: 1..64 chars of digits and
 * dots, no empty component). Leading zeros in a component are tolerated
 * because real devices write them. */
bool uid_valid(const char *s);

#endif
