/* Unit tests for dicom/dict.c and the generated dicom/dict_table.c. */
#include "core/common.h"

#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "dicom/dict.h"
#include "dicom/vr.h"
#include "core/banned.h"

/* Checks tag -> keyword, VR pair and VM. */
static void check_tag(uint32_t tag, const char *keyword, uint16_t vr, uint16_t vr_alt,
                      const char *vm)
{
    const struct dict_entry *e = dict_lookup_tag(tag);
    CHECK(e != NULL);
    if (!e) {
        fprintf(stderr, "  tag %08" PRIX32 " (%s) not found\n", tag, keyword);
        return;
    }
    CHECK_STR_EQ(e->keyword, keyword);
    CHECK_INT_EQ(e->vr, vr);
    CHECK_INT_EQ(e->vr_alt, vr_alt);
    if (vm)
        CHECK_STR_EQ(e->vm, vm);
}

static void test_known_tags(void)
{
    check_tag(0x00100010, "PatientName", VR_PN, VR_NONE, "1");
    check_tag(0x00100020, "PatientID", VR_LO, VR_NONE, "1");
    check_tag(0x0020000D, "StudyInstanceUID", VR_UI, VR_NONE, "1");
    check_tag(0x0020000E, "SeriesInstanceUID", VR_UI, VR_NONE, "1");
    check_tag(0x00080018, "SOPInstanceUID", VR_UI, VR_NONE, "1");
    check_tag(0x00080005, "SpecificCharacterSet", VR_CS, VR_NONE, "1-n");
    check_tag(0x00020010, "TransferSyntaxUID", VR_UI, VR_NONE, "1");
    check_tag(0x00280010, "Rows", VR_US, VR_NONE, "1");
    check_tag(0x00280030, "PixelSpacing", VR_DS, VR_NONE, "2");
    check_tag(0x00081115, "ReferencedSeriesSequence", VR_SQ, VR_NONE, "1");
    check_tag(0x7FE00010, "PixelData", VR_OB, VR_OW, "1");
    check_tag(0x00283002, "LUTDescriptor", VR_US, VR_SS, "3");
    check_tag(0x00280106, "SmallestImagePixelValue", VR_US, VR_SS, "1");
    check_tag(0x00281200, "GrayLookupTableData", VR_US, VR_SS, "1-n");
    check_tag(0x00283006, "LUTData", VR_US, VR_OW, "1-n");
    check_tag(0xFFFEE000, "Item", VR_NONE, VR_NONE, NULL);
    check_tag(0xFFFEE0DD, "SequenceDelimitationItem", VR_NONE, VR_NONE, NULL);

    const struct dict_entry *e = dict_lookup_tag(0x00100010);
    CHECK(e && !e->retired);
    CHECK_STR_EQ(e ? e->name : NULL, "Patient's Name");
    CHECK_INT_EQ(e ? e->mask : 0, 0xFFFFFFFFu);
    e = dict_lookup_tag(0x00000001); /* CommandLengthToEnd */
    CHECK(e && e->retired);
}

static void test_repeaters(void)
{
    /* Overlays: any even group 6000-60FE. */
    check_tag(0x60000010, "OverlayRows", VR_US, VR_NONE, "1");
    check_tag(0x60020010, "OverlayRows", VR_US, VR_NONE, "1");
    check_tag(0x601E0011, "OverlayColumns", VR_US, VR_NONE, "1");
    check_tag(0x60003000, "OverlayData", VR_OB, VR_OW, "1");
    check_tag(0x60100050, "OverlayOrigin", VR_SS, VR_NONE, "2");
    CHECK(dict_lookup_tag(0x60000010) == dict_lookup_tag(0x60020010));
    const struct dict_entry *e = dict_lookup_tag(0x60020010);
    CHECK_INT_EQ(e ? e->tag : 0, 0x60000010);
    CHECK_INT_EQ(e ? e->mask : 0, 0xFF00FFFFu);
    /* Curves (retired): 50xx. */
    check_tag(0x50000005, "CurveDimensions", VR_US, VR_NONE, "1");
    check_tag(0x50020010, "NumberOfPoints", VR_US, VR_NONE, "1");
    check_tag(0x50043000, "CurveData", VR_OB, VR_OW, "1");
    e = dict_lookup_tag(0x50043000);
    CHECK(e && e->retired);
    /* Variable pixel data 7Fxx, but 7FE0,0010 stays exact. */
    check_tag(0x7F020010, "VariablePixelData", VR_OB, VR_OW, "1");
    /* Element repeaters. */
    check_tag(0x10000013, "HuffmanTableTriplet", VR_US, VR_NONE, "3");
    check_tag(0x00280412, "CoefficientCoding", VR_LO, VR_NONE, "1-n");
    /* An exact tag wins over a repeater whose range covers it. */
    check_tag(0x00280402, "NumberOfTransformSteps", VR_US, VR_NONE, "1");
    /* Not in a repeating range. */
    CHECK(dict_lookup_tag(0x61000010) == NULL);
    CHECK(dict_lookup_tag(0x60000001) == NULL);
}

static void test_group_length_and_private(void)
{
    check_tag(0x00000000, "CommandGroupLength", VR_UL, VR_NONE, "1");
    check_tag(0x00020000, "FileMetaInformationGroupLength", VR_UL, VR_NONE, "1");
    check_tag(0x00080000, "GenericGroupLength", VR_UL, VR_NONE, "1");
    check_tag(0x00100000, "GenericGroupLength", VR_UL, VR_NONE, "1");
    check_tag(0x60020000, "GenericGroupLength", VR_UL, VR_NONE, "1");
    /* Private group lengths are UL too (PS3.5 7.2). */
    check_tag(0x00090000, "GenericGroupLength", VR_UL, VR_NONE, "1");
    CHECK(dict_lookup_tag(0x00080000) == dict_lookup_tag(0x00200000));
    CHECK(dict_lookup_keyword("GenericGroupLength") == NULL);

    CHECK(dict_lookup_tag(0x00090010) == NULL);  /* private creator */
    CHECK(dict_lookup_tag(0x00291010) == NULL);
    CHECK(dict_lookup_tag(0x00191010) == NULL);
    CHECK(dict_lookup_tag(0x60010010) == NULL);  /* odd 60xx: private, not overlay */
    CHECK(dict_lookup_tag(0x7FE10010) == NULL);
    CHECK(dict_lookup_tag(0x00100011) == NULL);  /* unassigned public element */
    CHECK(dict_lookup_tag(0xFFFFFFFF) == NULL);
}

static void test_keywords(void)
{
    const struct dict_entry *e = dict_lookup_keyword("PatientName");
    CHECK_INT_EQ(e ? e->tag : 0, 0x00100010);
    e = dict_lookup_keyword("PixelData");
    CHECK_INT_EQ(e ? e->tag : 0, 0x7FE00010);
    e = dict_lookup_keyword("OverlayRows");
    CHECK_INT_EQ(e ? e->tag : 0, 0x60000010);
    CHECK_INT_EQ(e ? e->mask : 0, 0xFF00FFFFu);
    CHECK(dict_lookup_keyword("patientname") == NULL);
    CHECK(dict_lookup_keyword("PatientNam") == NULL);
    CHECK(dict_lookup_keyword("PatientNameX") == NULL);
    CHECK(dict_lookup_keyword("") == NULL);
    CHECK(dict_lookup_keyword(NULL) == NULL);
}

/* Every entry: sorted, keyword round trip, tag round trip. */
static void test_every_entry(void)
{
    unsigned n = dict_size(), n_exact = 0, n_rep = 0, bad_order = 0, bad_kw = 0, bad_tag = 0;
    CHECK(n > 4000);
    CHECK(dict_entry_at(n) == NULL);
    for (unsigned i = 0; i < n; i++) {
        const struct dict_entry *e = dict_entry_at(i);
        if (!e || !e->keyword || !e->keyword[0] || !e->name || !e->vm) {
            CHECK_FAIL_("entry %u incomplete", i);
            continue;
        }
        if (i > 0 && dict_entry_at(i - 1)->tag > e->tag)
            bad_order++;
        if (e->vr != VR_NONE && !vr_is_known(e->vr))
            CHECK_FAIL_("%s: bad vr %04x", e->keyword, e->vr);
        if (e->vr_alt != VR_NONE && !vr_is_known(e->vr_alt))
            CHECK_FAIL_("%s: bad vr_alt %04x", e->keyword, e->vr_alt);
        if (dict_lookup_keyword(e->keyword) != e) {
            bad_kw++;
            CHECK_FAIL_("keyword %s does not round trip", e->keyword);
        }
        const struct dict_entry *t = dict_lookup_tag(e->tag);
        if (e->mask == 0xFFFFFFFFu) {
            n_exact++;
            if (t != e) {
                bad_tag++;
                CHECK_FAIL_("tag %08" PRIX32 " (%s) does not round trip", e->tag, e->keyword);
            }
        } else {
            n_rep++;
            /* A repeater's base tag finds it, unless it is a group length or an
             * exact entry has the same tag (0028,0402: 002804x2 vs exact). */
            if ((e->tag & e->mask) != e->tag)
                CHECK_FAIL_("%s: base tag has masked bits", e->keyword);
            if (t != e && (e->tag & 0xFFFF) != 0 && !(t && t->mask == 0xFFFFFFFFu)) {
                bad_tag++;
                CHECK_FAIL_("repeater %08" PRIX32 " (%s) does not round trip", e->tag,
                            e->keyword);
            }
        }
    }
    CHECK_INT_EQ(bad_order, 0);
    CHECK_INT_EQ(bad_kw, 0);
    CHECK_INT_EQ(bad_tag, 0);
    CHECK(n_exact > 4000);
    CHECK(n_rep > 50);
    fprintf(stderr, "  %u entries: %u exact, %u repeating\n", n, n_exact, n_rep);
}

int main(void)
{
    RUN(test_known_tags);
    RUN(test_repeaters);
    RUN(test_group_length_and_private);
    RUN(test_keywords);
    RUN(test_every_entry);
    return check_summary();
}
