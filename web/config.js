// config.js - site settings of the viewer. Edit here for a deployment; a
// user can override the DICOMweb root in Settings (kept in localStorage).
export default {
  // DICOMweb service root: a path on this server or a full URL of another
  // DICOMweb server (which must then allow this origin with CORS).
  dicomwebRoot: '/dicomweb',
  // studies per page in the study list (QIDO limit/offset)
  pageSize: 25,
  // append '*' to a typed patient name (prefix search on servers without fuzzy matching)
  nameWildcard: true,
  // bytes of decoded images kept in memory; 0 = chosen from the device (phones get less)
  cacheBytes: 0,
  // parallel frame requests
  concurrency: 4,
  // register the service worker (offline app shell)
  serviceWorker: true,
};
