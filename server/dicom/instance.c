/* instance.c - see instance.h. */
#include "core/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "dicom/charset.h"
#include "dicom/dcm.h"
#include "dicom/instance.h"
#include "dicom/vr.h"
#include "core/banned.h"

static const uint32_t g_study_tags[] = {
    TAG(0x0008, 0x0005), /* SpecificCharacterSet */
    TAG(0x0008, 0x0020), /* StudyDate */
    TAG(0x0008, 0x0030), /* StudyTime */
    TAG(0x0008, 0x0050), /* AccessionNumber */
    TAG(0x0008, 0x0051), /* IssuerOfAccessionNumberSequence */
    TAG(0x0008, 0x0090), /* ReferringPhysicianName */
    TAG(0x0008, 0x0096), /* ReferringPhysicianIdentificationSequence */
    TAG(0x0008, 0x0201), /* TimezoneOffsetFromUTC */
    TAG(0x0008, 0x1030), /* StudyDescription */
    TAG(0x0008, 0x1032), /* ProcedureCodeSequence */
    TAG(0x0008, 0x1048), /* PhysiciansOfRecord */
    TAG(0x0008, 0x1060), /* NameOfPhysiciansReadingStudy */
    TAG(0x0008, 0x1080), /* AdmittingDiagnosesDescription */
    TAG(0x0020, 0x000D), /* StudyInstanceUID */
    TAG(0x0020, 0x0010), /* StudyID */
    TAG(0x0032, 0x1032), /* RequestingPhysician */
    TAG(0x0032, 0x1060), /* RequestedProcedureDescription */
};

static const uint32_t g_series_tags[] = {
    TAG(0x0008, 0x0005), /* SpecificCharacterSet */
    TAG(0x0008, 0x0021), /* SeriesDate */
    TAG(0x0008, 0x0031), /* SeriesTime */
    TAG(0x0008, 0x0060), /* Modality */
    TAG(0x0008, 0x0070), /* Manufacturer */
    TAG(0x0008, 0x0080), /* InstitutionName */
    TAG(0x0008, 0x0201), /* TimezoneOffsetFromUTC */
    TAG(0x0008, 0x1010), /* StationName */
    TAG(0x0008, 0x103E), /* SeriesDescription */
    TAG(0x0008, 0x1040), /* InstitutionalDepartmentName */
    TAG(0x0008, 0x1050), /* PerformingPhysicianName */
    TAG(0x0008, 0x1070), /* OperatorsName */
    TAG(0x0008, 0x1090), /* ManufacturerModelName */
    TAG(0x0008, 0x1111), /* ReferencedPerformedProcedureStepSequence */
    TAG(0x0018, 0x0015), /* BodyPartExamined */
    TAG(0x0018, 0x1030), /* ProtocolName */
    TAG(0x0018, 0x5100), /* PatientPosition */
    TAG(0x0020, 0x000E), /* SeriesInstanceUID */
    TAG(0x0020, 0x0011), /* SeriesNumber */
    TAG(0x0020, 0x0052), /* FrameOfReferenceUID */
    TAG(0x0020, 0x0060), /* Laterality */
    TAG(0x0040, 0x0244), /* PerformedProcedureStepStartDate */
    TAG(0x0040, 0x0245), /* PerformedProcedureStepStartTime */
    TAG(0x0040, 0x0253), /* PerformedProcedureStepID */
    TAG(0x0040, 0x0254), /* PerformedProcedureStepDescription */
    TAG(0x0040, 0x0275), /* RequestAttributesSequence */
};

static bool in_list(const uint32_t *v, size_t n, uint32_t tag)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == tag)
            return true;
    return false;
}

bool inst_is_study_tag(uint32_t tag)
{
    /* the whole Patient module group (0010,xxxx) travels with the study */
    return TAG_GROUP(tag) == 0x0010 || in_list(g_study_tags, YY_ARRAY_LEN(g_study_tags), tag);
}

bool inst_is_series_tag(uint32_t tag)
{
    return in_list(g_series_tags, YY_ARRAY_LEN(g_series_tags), tag);
}

bool uid_valid(const char *s)
{
    size_t n = 0;
    bool comp_empty = true;
    if (!s || !*s)
        return false;
    for (; s[n]; n++) {
        char c = s[n];
        if (c == '.') {
            if (comp_empty)
                return false;
            comp_empty = true;
        } else if (c >= '0' && c <= '9') {
            comp_empty = false;
        } else {
            return false;
        }
        if (n >= 64)
            return false;
    }
    return !comp_empty;
}

/* Charset-converted, trimmed text of a top-level element (all values, joined
 * by backslashes as stored), or NULL when absent/empty. */
static const char *text(const struct dcm_file *f, const struct charset *cs, uint32_t tag)
{
    const struct dcm_elem *e = dcm_find(&f->ds, tag);
    if (!e || !e->value || (e->flags & DCM_E_BULK))
        return NULL;
    const char *s = (const char *)e->value;
    size_t len = e->len;
    struct buf tmp;
    buf_init(&tmp, (size_t)1 << 20);
    if (vr_uses_charset(e->vr) && !charset_passthrough(cs, e->value, e->len)) {
        if (charset_to_utf8(cs, e->value, e->len, e->vr, &tmp) < 0) {
            buf_release(&tmp);
            return NULL;
        }
        s = tmp.data ? tmp.data : "";
        len = tmp.len;
    }
    while (len && (s[len - 1] == ' ' || s[len - 1] == 0))
        len--;
    size_t a = 0;
    while (a < len && s[a] == ' ')
        a++;
    const char *out = a < len ? arena_strndup(f->arena, s + a, len - a) : NULL;
    buf_release(&tmp);
    return out;
}

static int ident(const struct dcm_file *f, uint32_t tag, const char *name, const char **out,
                 enum inst_status *status, char *err, size_t cap)
{
    const char *v = dcm_str(f, &f->ds, tag);
    if (!v) {
        *status = INST_BAD_UID;
        snprintf(err, cap, "missing %s (%04X,%04X)", name, TAG_GROUP(tag), TAG_ELEM(tag));
        return -EBADMSG;
    }
    if (!uid_valid(v)) {
        *status = INST_BAD_UID;
        snprintf(err, cap, "invalid %s (%04X,%04X): not a UID of at most 64 digits and dots",
                 name, TAG_GROUP(tag), TAG_ELEM(tag));
        return -EBADMSG;
    }
    *out = v;
    return 0;
}

int inst_from_file(const struct dcm_file *f, const struct file_bytes *src, struct inst *in,
                   enum inst_status *status, char *err, size_t err_cap)
{
    int r;
    memset(in, 0, sizeof(*in));
    json_out_init(&in->json);
    buf_init(&in->study_json, (size_t)16 << 20);
    buf_init(&in->series_json, (size_t)16 << 20);
    buf_init(&in->layout_blob, (size_t)256 << 20);
    *status = INST_OK;
    if (err_cap)
        err[0] = 0;

    if ((r = ident(f, TAG(0x0020, 0x000D), "StudyInstanceUID", &in->study_uid, status, err,
                   err_cap)) < 0 ||
        (r = ident(f, TAG(0x0020, 0x000E), "SeriesInstanceUID", &in->series_uid, status, err,
                   err_cap)) < 0 ||
        (r = ident(f, TAG(0x0008, 0x0018), "SOPInstanceUID", &in->sop_uid, status, err,
                   err_cap)) < 0 ||
        (r = ident(f, TAG(0x0008, 0x0016), "SOPClassUID", &in->sop_class_uid, status, err,
                   err_cap)) < 0)
        return r;
    /* PS3.10 7.1 wants MediaStorageSOPInstanceUID (0002,0003) equal to the
     * SOP Instance UID; real devices get it wrong and the dataset's value is
     * what identifies the object, so a mismatch is tolerated. */
    in->ts_uid = f->ts_uid && f->ts_uid[0] ? f->ts_uid : "1.2.840.10008.1.2";

    struct charset cs;
    charset_default(&cs);
    const struct dcm_elem *sc = dcm_find(&f->ds, TAG_SPECIFIC_CHARACTER_SET);
    if (sc && sc->value)
        charset_parse((const char *)sc->value, sc->len, &cs, NULL);
    in->charset = dcm_str(f, &f->ds, TAG_SPECIFIC_CHARACTER_SET);

    in->patient_id = text(f, &cs, TAG(0x0010, 0x0020));
    in->issuer_of_patient_id = text(f, &cs, TAG(0x0010, 0x0021));
    in->patient_name = text(f, &cs, TAG(0x0010, 0x0010));
    in->patient_birth_date = text(f, &cs, TAG(0x0010, 0x0030));
    in->patient_sex = text(f, &cs, TAG(0x0010, 0x0040));
    in->study_date = text(f, &cs, TAG(0x0008, 0x0020));
    in->study_time = text(f, &cs, TAG(0x0008, 0x0030));
    in->accession_number = text(f, &cs, TAG(0x0008, 0x0050));
    in->referring_physician_name = text(f, &cs, TAG(0x0008, 0x0090));
    in->study_description = text(f, &cs, TAG(0x0008, 0x1030));
    in->study_id = text(f, &cs, TAG(0x0020, 0x0010));
    /* where the study came from: InstitutionName, else the sending AE
     * (File Meta SourceApplicationEntityTitle), else the station */
    in->institution_name = text(f, &cs, TAG(0x0008, 0x0080));
    if (!in->institution_name)
        in->institution_name = dcm_str(f, &f->meta, TAG_SOURCE_AE_TITLE);
    if (!in->institution_name)
        in->institution_name = text(f, &cs, TAG(0x0008, 0x1010));
    in->modality = text(f, &cs, TAG(0x0008, 0x0060));
    in->series_description = text(f, &cs, TAG(0x0008, 0x103E));
    in->body_part = text(f, &cs, TAG(0x0018, 0x0015));
    in->series_date = text(f, &cs, TAG(0x0008, 0x0021));
    in->series_time = text(f, &cs, TAG(0x0008, 0x0031));
    in->pps_start_date = text(f, &cs, TAG(0x0040, 0x0244));
    in->pps_start_time = text(f, &cs, TAG(0x0040, 0x0245));
    in->frame_of_reference_uid = text(f, &cs, TAG(0x0020, 0x0052));
    in->station_name = text(f, &cs, TAG(0x0008, 0x1010));
    in->content_date = text(f, &cs, TAG(0x0008, 0x0023));
    in->content_time = text(f, &cs, TAG(0x0008, 0x0033));
    if (dcm_find(&f->ds, TAG(0x0020, 0x0011))) {
        in->series_number = dcm_long(&f->ds, TAG(0x0020, 0x0011), 0);
        in->has_series_number = dcm_str(f, &f->ds, TAG(0x0020, 0x0011)) != NULL;
    }
    if (dcm_find(&f->ds, TAG(0x0020, 0x0013))) {
        in->instance_number = dcm_long(&f->ds, TAG(0x0020, 0x0013), 0);
        in->has_instance_number = dcm_str(f, &f->ds, TAG(0x0020, 0x0013)) != NULL;
    }

    struct json_uris u = {in->study_uid, in->series_uid, in->sop_uid};
    r = json_write_dataset(f, &u, NULL, &in->json);
    if (r < 0)
        goto fail;
    struct json_out lvl;
    json_out_init(&lvl);
    r = json_write_dataset(f, &u, inst_is_study_tag, &lvl);
    if (r == 0)
        r = buf_append(&in->study_json, lvl.text.data, lvl.text.len);
    json_out_release(&lvl);
    if (r < 0)
        goto fail;
    json_out_init(&lvl);
    r = json_write_dataset(f, &u, inst_is_series_tag, &lvl);
    if (r == 0)
        r = buf_append(&in->series_json, lvl.text.data, lvl.text.len);
    json_out_release(&lvl);
    if (r < 0)
        goto fail;

    r = layout_from_file(f, src, in->json.bulk, in->json.n_bulk, &in->layout);
    if (r == 0)
        r = layout_encode(&in->layout, &in->layout_blob);
    if (r < 0)
        goto fail;
    in->n_frames = (in->layout.flags & LAYOUT_PIXELS) ? in->layout.n_frames : 0;
    in->rows = in->layout.rows;
    in->cols = in->layout.cols;
    return 0;
fail:
    *status = INST_CANNOT_UNDERSTAND;
    snprintf(err, err_cap, "cannot encode the dataset (%s)",
             r == -E2BIG ? "over a size limit" : "out of memory");
    return r;
}

void inst_release(struct inst *in)
{
    json_out_release(&in->json);
    buf_release(&in->study_json);
    buf_release(&in->series_json);
    buf_release(&in->layout_blob);
}
