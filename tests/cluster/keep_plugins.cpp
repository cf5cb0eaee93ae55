// Linked into the cluster tests of a sanitized build only: dlclose() does
// nothing, so Open MPI's plugins stay mapped until exit. LeakSanitizer then
// names the plugin behind each allocation Open MPI never frees, and
// tests/lsan-mpi.supp can suppress exactly those, leaving leak detection on
// for sealstore's own code. (Unloaded, the plugins show up as an "unknown
// module" that no suppression can name.)
extern "C" int dlclose(void* /*handle*/) { return 0; }
