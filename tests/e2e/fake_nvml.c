/* A stand-in for the NVIDIA driver's libnvidia-ml.so.1: one fake H100, as NVML would describe
 * it. The tests build it with gcc and mount it into a container, where bootstrap/gpu.py reads
 * it through pynvml; no GPU or driver can exist on the test machines (a boundary, so a fake).
 * Only the calls detect_gpu makes are here; each returns NVML_SUCCESS (0).
 */
#include <string.h>

typedef struct {
    unsigned long long total, free, used;
} nvml_memory_t;

static int device = 1; /* the one device's handle points here */

static int copy_text(char *out, unsigned int size, const char *text) {
    if (size == 0) return 7; /* NVML_ERROR_INSUFFICIENT_SIZE */
    strncpy(out, text, size - 1);
    out[size - 1] = '\0';
    return 0;
}

int nvmlInit_v2(void) { return 0; }
int nvmlInitWithFlags(unsigned int flags) { (void)flags; return 0; }
int nvmlShutdown(void) { return 0; }
const char *nvmlErrorString(int result) { (void)result; return "fake NVML error"; }

int nvmlSystemGetDriverVersion(char *version, unsigned int size) {
    return copy_text(version, size, "550.127.05");
}

int nvmlSystemGetCudaDriverVersion_v2(int *version) {
    *version = 12040;
    return 0;
}

int nvmlDeviceGetCount_v2(unsigned int *count) {
    *count = 1;
    return 0;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned int index, void **handle) {
    if (index != 0) return 2; /* NVML_ERROR_INVALID_ARGUMENT */
    *handle = &device;
    return 0;
}

int nvmlDeviceGetName(void *handle, char *name, unsigned int size) {
    (void)handle;
    return copy_text(name, size, "NVIDIA H100 80GB HBM3");
}

int nvmlDeviceGetUUID(void *handle, char *uuid, unsigned int size) {
    (void)handle;
    return copy_text(uuid, size, "GPU-00000000-0000-0000-0000-000000000001");
}

int nvmlDeviceGetMemoryInfo(void *handle, nvml_memory_t *memory) {
    (void)handle;
    memory->total = 85520809984ULL;
    memory->free = memory->total;
    memory->used = 0;
    return 0;
}

int nvmlDeviceGetCudaComputeCapability(void *handle, int *major, int *minor) {
    (void)handle;
    *major = 9;
    *minor = 0;
    return 0;
}
