/*
 * xml.h - PS3.19 Native DICOM Model XML from the DICOM JSON Model (the two
 * representations PS3.18 offers for metadata and QIDO responses).
 *
 * Converts one JSON object (jansson) into one <NativeDicomModel> document.
 * BulkDataURI becomes <BulkData uri=".."/>, InlineBinary <InlineBinary>,
 * PN groups <Alphabetic>/<Ideographic>/<Phonetic> with name components.
 */
#ifndef YY_XML_H
#define YY_XML_H

#include <jansson.h>

#include "core/buf.h"

/* Appends the XML document for obj to out. Returns 0 or -ENOMEM/-E2BIG. */
int xml_from_json(const json_t *obj, struct buf *out);

#endif
