/* telemrec's replay libnvidia-ml.so.1, part 1: the timeline, the clock, init/shutdown, system
 * queries, device handles and identity, MIG. Dynamic readings are in nvml_replay_queries.c. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "nvml_replay.h"

#define TIMELINE_ENV "TELEMREC_NVML_TIMELINE"
#define HEADER_SIZE 256u

const struct tl_header *replay_header;
struct replay_device *replay_devices;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int init_count;          /* nvmlInit calls not yet matched by nvmlShutdown */
static const unsigned char *map; /* the mapped timeline; kept for the life of the process */
static size_t map_size;

int replay_initialized(void) { return __atomic_load_n(&init_count, __ATOMIC_ACQUIRE) > 0; }

/* -- loading ----------------------------------------------------------------------------- */
static int fits(uint64_t offset, uint64_t count, uint64_t size)
{
    return offset % 8 == 0 && offset <= map_size && count <= (map_size - offset) / (size ? size : 1);
}

static const char *check_device(const struct tl_device *d, uint32_t index)
{
    const struct tl_header *h = replay_header;
    uint64_t n = d->n_samples;
    if (d->name[sizeof d->name - 1] || d->uuid[sizeof d->uuid - 1] || d->bus_id[sizeof d->bus_id - 1] ||
        d->bus_id_legacy[sizeof d->bus_id_legacy - 1])
        return "unterminated string";
    if (!fits(d->times_off, n, 8) || !fits(d->values_off, n * TL_NFIELDS, 8) || !fits(d->status_off, n, 4) ||
        !fits(d->proc_index_off, n + 1, 4) || !fits(d->increment_off, TL_NFIELDS, 8))
        return "array outside the file";
    if (index < h->n_gpus) {
        if (d->parent != -1 || d->first_child > h->n_devices || d->n_children > h->n_devices - d->first_child)
            return "bad MIG children";
    } else if (d->parent < 0 || (uint32_t)d->parent >= h->n_gpus) {
        return "bad MIG parent";
    }
    const uint32_t *proc_index = (const uint32_t *)(map + d->proc_index_off);
    uint32_t n_procs = n ? proc_index[n] : 0;
    if (!fits(d->procs_off, n_procs, sizeof(struct tl_proc)))
        return "processes outside the file";
    for (uint64_t i = 0; i < n; i++)
        if (proc_index[i] > proc_index[i + 1]) return "process index not ascending";
    return NULL;
}

static const char *load(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return strerror(errno);
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < (off_t)HEADER_SIZE) {
        close(fd);
        return "too short to be a timeline";
    }
    void *mem = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (mem == MAP_FAILED) return strerror(errno);
    map = mem;
    map_size = (size_t)st.st_size;
    const struct tl_header *h = (const struct tl_header *)map;
    replay_header = h;
    const char *problem = NULL;
    if (memcmp(h->magic, TL_MAGIC, 8) != 0) problem = "not a telemrec NVML timeline";
    else if (h->version != TL_VERSION || h->n_fields != TL_NFIELDS || h->device_size != sizeof(struct tl_device))
        problem = "written by another telemrec version";
    else if (h->header_size != HEADER_SIZE || h->n_gpus > h->n_devices ||
             !fits(HEADER_SIZE, h->n_devices, sizeof(struct tl_device)))
        problem = "device table outside the file";
    else if (!(h->speed > 0) || h->driver_version[79] || h->nvml_version[79])
        problem = "bad header";
    const struct tl_device *table = (const struct tl_device *)(map + HEADER_SIZE);
    for (uint32_t i = 0; !problem && i < h->n_devices; i++) problem = check_device(&table[i], i);
    if (!problem) {
        replay_devices = calloc(h->n_devices ? h->n_devices : 1, sizeof *replay_devices);
        if (!replay_devices) problem = "out of memory";
    }
    if (problem) {
        munmap(mem, map_size);
        map = NULL;
        replay_header = NULL;
        return problem;
    }
    for (uint32_t i = 0; i < h->n_devices; i++) {
        const struct tl_device *d = &table[i];
        struct replay_device *r = &replay_devices[i];
        r->d = d;
        r->table_index = i;
        r->times = (const int64_t *)(map + d->times_off);
        r->values = (const int64_t *)(map + d->values_off);
        r->status = (const int32_t *)(map + d->status_off);
        r->proc_index = (const uint32_t *)(map + d->proc_index_off);
        r->procs = (const struct tl_proc *)(map + d->procs_off);
        r->increment = (const int64_t *)(map + d->increment_off);
        r->parent = d->parent >= 0 ? &replay_devices[d->parent] : NULL;
    }
    return NULL;
}

static nvmlReturn_t init(void)
{
    nvmlReturn_t result = NVML_SUCCESS;
    pthread_mutex_lock(&lock);
    if (!map) {
        const char *path = getenv(TIMELINE_ENV);
        const char *problem = path && *path ? load(path) : "not set (run the command under `telemrec replay TRACE --as nvml -- COMMAND`)";
        static int told; /* say it once: tools retry nvmlInit */
        if (problem && !told++) {
            fprintf(stderr, "telemrec replay libnvidia-ml: cannot serve a trace: %s %s: %s\n", TIMELINE_ENV,
                    path && *path ? path : "", problem);
        }
        if (problem) result = NVML_ERROR_DRIVER_NOT_LOADED;
    }
    if (result == NVML_SUCCESS) __atomic_add_fetch(&init_count, 1, __ATOMIC_ACQ_REL);
    pthread_mutex_unlock(&lock);
    return result;
}

EXPORT nvmlReturn_t nvmlInit(void) { return init(); }
EXPORT nvmlReturn_t nvmlInit_v2(void) { return init(); }
EXPORT nvmlReturn_t nvmlInitWithFlags(unsigned int flags) { (void)flags; return init(); }

EXPORT nvmlReturn_t nvmlShutdown(void)
{
    nvmlReturn_t result = NVML_SUCCESS;
    pthread_mutex_lock(&lock);
    if (init_count == 0) result = NVML_ERROR_UNINITIALIZED;
    else __atomic_sub_fetch(&init_count, 1, __ATOMIC_ACQ_REL);
    pthread_mutex_unlock(&lock); /* the mapping stays: other threads may still be inside a call */
    return result;
}

EXPORT const char *nvmlErrorString(nvmlReturn_t result)
{
    switch (result) {
    case 0: return "Success";
    case 1: return "Uninitialized";
    case 2: return "Invalid Argument";
    case 3: return "Not Supported";
    case 4: return "Insufficient Permissions";
    case 5: return "Already Initialized";
    case 6: return "Not Found";
    case 7: return "Insufficient Size";
    case 8: return "Insufficient External Power";
    case 9: return "Driver Not Loaded";
    case 10: return "Timeout";
    case 11: return "Interrupt Request Issue";
    case 12: return "NVML Shared Library Not Found";
    case 13: return "Function Not Found";
    case 14: return "Corrupted infoROM";
    case 15: return "GPU is lost";
    case 16: return "GPU requires reset";
    case 17: return "GPU access blocked by the operating system";
    case 18: return "Driver/library version mismatch";
    case 19: return "In use by another client";
    case 20: return "Insufficient Memory";
    case 21: return "No data";
    case 25: return "Argument version mismatch";
    case 26: return "Deprecated";
    case 27: return "Not ready";
    case 28: return "GPU not found";
    default: return "Unknown Error";
    }
}

/* -- the clock: which sample is in effect -------------------------------------------------- */
static void trace_position(int64_t *in_pass, int64_t *pass)
{
    const struct tl_header *h = replay_header;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double elapsed = (double)((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec - h->anchor_mono_ns);
    double t = elapsed > 0 ? elapsed * h->speed : 0.0;
    int64_t now = t < 9.0e18 ? (int64_t)t : (int64_t)9.0e18;
    *pass = 0;
    *in_pass = now;
    if (h->period_ns <= 0 || now < h->period_ns) return;
    int64_t k = now / h->period_ns;
    if (h->loops > 0 && k >= h->loops) { /* the last pass is over: its last sample holds */
        *pass = h->loops - 1;
        *in_pass = INT64_MAX;
        return;
    }
    *pass = k;
    *in_pass = now - k * h->period_ns;
}

static uint32_t sample_index(const struct replay_device *dev, int64_t t)
{
    /* the last sample at or before t; before the first sample, the first */
    uint32_t lo = 0, hi = dev->d->n_samples;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (dev->times[mid] <= t) lo = mid + 1;
        else hi = mid;
    }
    return lo ? lo - 1 : 0;
}

nvmlReturn_t replay_now(const struct replay_device *dev, struct moment *at)
{
    int64_t t, pass;
    trace_position(&t, &pass);
    if (dev->parent) { /* a lost GPU takes its MIG devices with it */
        const struct replay_device *gpu = dev->parent;
        if (gpu->d->n_samples) {
            int32_t status = gpu->status[sample_index(gpu, t)];
            if (status) return status;
        }
    }
    if (dev->d->n_samples == 0) return NVML_ERROR_NOT_SUPPORTED;
    at->index = sample_index(dev, t);
    at->pass = pass;
    return dev->status[at->index];
}

nvmlReturn_t replay_alive(const struct replay_device *dev)
{
    struct moment at;
    nvmlReturn_t status = replay_now(dev, &at);
    return status == NVML_ERROR_NOT_SUPPORTED ? NVML_SUCCESS : status; /* no samples: nothing says it is lost */
}

nvmlReturn_t replay_field(const struct replay_device *dev, const struct moment *at, int field, int64_t *out)
{
    int64_t value = dev->values[(size_t)at->index * TL_NFIELDS + field];
    if (value == TL_NONE) return NVML_ERROR_NOT_SUPPORTED;
    *out = value + at->pass * dev->increment[field]; /* counters keep counting across loop passes */
    return NVML_SUCCESS;
}

nvmlReturn_t replay_enter(nvmlDevice_t device, struct replay_device **out)
{
    if (!replay_initialized()) return NVML_ERROR_UNINITIALIZED;
    uintptr_t p = (uintptr_t)device, base = (uintptr_t)replay_devices;
    if (p < base || p >= base + replay_header->n_devices * sizeof *replay_devices ||
        (p - base) % sizeof *replay_devices != 0)
        return NVML_ERROR_INVALID_ARGUMENT;
    *out = device;
    return NVML_SUCCESS;
}

nvmlReturn_t replay_copy_string(const char *src, size_t src_size, char *dst, unsigned int length)
{
    if (!dst) return NVML_ERROR_INVALID_ARGUMENT;
    size_t n = strnlen(src, src_size);
    if (n == 0) return NVML_ERROR_NOT_SUPPORTED; /* the trace does not say */
    if (length < n + 1) return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(dst, src, n);
    dst[n] = '\0';
    return NVML_SUCCESS;
}

/* -- system -------------------------------------------------------------------------------- */
EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length)
{
    if (!replay_initialized()) return NVML_ERROR_UNINITIALIZED;
    return replay_copy_string(replay_header->driver_version, 80, version, length);
}

EXPORT nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned int length)
{
    if (!replay_initialized()) return NVML_ERROR_UNINITIALIZED;
    return replay_copy_string(replay_header->nvml_version, 80, version, length);
}

EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *version)
{
    if (!version) return NVML_ERROR_INVALID_ARGUMENT;
    if (!replay_initialized()) return NVML_ERROR_UNINITIALIZED;
    if (replay_header->cuda_version <= 0) return NVML_ERROR_NOT_SUPPORTED;
    *version = replay_header->cuda_version;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *version) { return nvmlSystemGetCudaDriverVersion(version); }

/* -- device handles ------------------------------------------------------------------------ */
EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count)
{
    if (!replay_initialized()) return NVML_ERROR_UNINITIALIZED;
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    *count = replay_header->n_gpus;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetCount(unsigned int *count) { return nvmlDeviceGetCount_v2(count); }

EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device)
{
    if (!replay_initialized()) return NVML_ERROR_UNINITIALIZED;
    if (!device || index >= replay_header->n_gpus) return NVML_ERROR_INVALID_ARGUMENT;
    *device = &replay_devices[index];
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t *device)
{
    return nvmlDeviceGetHandleByIndex_v2(index, device);
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device)
{
    if (!replay_initialized()) return NVML_ERROR_UNINITIALIZED;
    if (!uuid || !device) return NVML_ERROR_INVALID_ARGUMENT;
    for (uint32_t i = 0; i < replay_header->n_devices; i++) { /* MIG UUIDs too, as NVML since R470 */
        if (replay_devices[i].d->uuid[0] && strcasecmp(replay_devices[i].d->uuid, uuid) == 0) {
            *device = &replay_devices[i];
            return NVML_SUCCESS;
        }
    }
    return NVML_ERROR_NOT_FOUND;
}

static int parse_bus_id(const char *text, unsigned int *domain, unsigned int *bus, unsigned int *dev)
{
    unsigned int function;
    char tail;
    if (sscanf(text, "%x:%x:%x.%x%c", domain, bus, dev, &function, &tail) == 4) return 1;
    *domain = 0;
    return sscanf(text, "%x:%x.%x%c", bus, dev, &function, &tail) == 3;
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByPciBusId_v2(const char *pciBusId, nvmlDevice_t *device)
{
    if (!replay_initialized()) return NVML_ERROR_UNINITIALIZED;
    unsigned int domain, bus, dev;
    if (!pciBusId || !device || !parse_bus_id(pciBusId, &domain, &bus, &dev)) return NVML_ERROR_INVALID_ARGUMENT;
    for (uint32_t i = 0; i < replay_header->n_gpus; i++) {
        const struct tl_device *d = replay_devices[i].d;
        if (d->bus_id[0] && d->pci_domain == domain && d->pci_bus == bus && d->pci_device == dev) {
            *device = &replay_devices[i];
            return NVML_SUCCESS;
        }
    }
    return NVML_ERROR_NOT_FOUND;
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByPciBusId(const char *pciBusId, nvmlDevice_t *device)
{
    return nvmlDeviceGetHandleByPciBusId_v2(pciBusId, device);
}

/* -- identity ------------------------------------------------------------------------------ */
EXPORT nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int *index)
{
    ENTER(device, dev);
    if (!index) return NVML_ERROR_INVALID_ARGUMENT;
    if (dev->parent) return NVML_ERROR_NOT_SUPPORTED;
    *index = dev->table_index;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length)
{
    ENTER_ALIVE(device, dev);
    return replay_copy_string(dev->d->name, sizeof dev->d->name, name, length);
}

EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length)
{
    ENTER_ALIVE(device, dev);
    return replay_copy_string(dev->d->uuid, sizeof dev->d->uuid, uuid, length);
}

EXPORT nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t device, unsigned int *minor)
{
    ENTER_ALIVE(device, dev);
    if (!minor) return NVML_ERROR_INVALID_ARGUMENT;
    if (dev->parent || dev->d->minor < 0) return NVML_ERROR_NOT_SUPPORTED;
    *minor = (unsigned int)dev->d->minor;
    return NVML_SUCCESS;
}

static const struct tl_device *pci_owner(const struct replay_device *dev)
{
    return dev->parent ? dev->parent->d : dev->d; /* a MIG device sits on its GPU's PCI function */
}

EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci)
{
    ENTER_ALIVE(device, dev);
    if (!pci) return NVML_ERROR_INVALID_ARGUMENT;
    const struct tl_device *d = pci_owner(dev);
    if (!d->bus_id[0]) return NVML_ERROR_NOT_SUPPORTED;
    memset(pci, 0, sizeof *pci);
    memcpy(pci->busIdLegacy, d->bus_id_legacy, sizeof pci->busIdLegacy);
    memcpy(pci->busId, d->bus_id, sizeof pci->busId);
    pci->domain = d->pci_domain;
    pci->bus = d->pci_bus;
    pci->device = d->pci_device;
    pci->pciDeviceId = d->pci_device_id;
    pci->pciSubSystemId = d->pci_subsystem_id;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v2(nvmlDevice_t device, nvmlPciInfo_t *pci)
{
    return nvmlDeviceGetPciInfo_v3(device, pci);
}

EXPORT nvmlReturn_t nvmlDeviceGetPciInfo(nvmlDevice_t device, nvmlPciInfo_v1_t *pci)
{
    nvmlPciInfo_t info;
    if (!pci) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t status = nvmlDeviceGetPciInfo_v3(device, &info);
    if (status != NVML_SUCCESS) return status;
    memset(pci, 0, sizeof *pci); /* the v1 layout: the short bus id, no busId[32] */
    memcpy(pci->busId, info.busIdLegacy, sizeof pci->busId);
    pci->domain = info.domain;
    pci->bus = info.bus;
    pci->device = info.device;
    pci->pciDeviceId = info.pciDeviceId;
    pci->pciSubSystemId = info.pciSubSystemId;
    return NVML_SUCCESS;
}

/* -- MIG ----------------------------------------------------------------------------------- */
#define MIG_SLOTS 7u /* A100/H100: at most seven MIG devices per GPU */

EXPORT nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *current, unsigned int *pending)
{
    ENTER_ALIVE(device, dev);
    if (!current || !pending) return NVML_ERROR_INVALID_ARGUMENT;
    if (dev->parent || dev->d->mig_mode < 0) return NVML_ERROR_NOT_SUPPORTED;
    *current = *pending = (unsigned int)dev->d->mig_mode;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int *count)
{
    ENTER_ALIVE(device, dev);
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    if (dev->parent || dev->d->mig_mode != 1) *count = 0;
    else *count = dev->d->n_children > MIG_SLOTS ? dev->d->n_children : MIG_SLOTS;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned int index, nvmlDevice_t *mig)
{
    ENTER_ALIVE(device, dev);
    unsigned int slots;
    nvmlDeviceGetMaxMigDeviceCount(device, &slots);
    if (!mig || dev->parent) return NVML_ERROR_INVALID_ARGUMENT;
    if (dev->d->mig_mode != 1) return NVML_ERROR_NOT_SUPPORTED;
    if (index >= slots) return NVML_ERROR_INVALID_ARGUMENT;
    if (index >= dev->d->n_children) return NVML_ERROR_NOT_FOUND;
    *mig = &replay_devices[dev->d->first_child + index];
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceIsMigDeviceHandle(nvmlDevice_t device, unsigned int *isMigDevice)
{
    ENTER(device, dev);
    if (!isMigDevice) return NVML_ERROR_INVALID_ARGUMENT;
    *isMigDevice = dev->parent != NULL;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t device, unsigned int *id)
{
    ENTER(device, dev);
    if (!id) return NVML_ERROR_INVALID_ARGUMENT;
    if (!dev->parent) return NVML_ERROR_NOT_SUPPORTED;
    *id = dev->d->gpu_instance_id;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetComputeInstanceId(nvmlDevice_t device, unsigned int *id)
{
    ENTER(device, dev);
    if (!id) return NVML_ERROR_INVALID_ARGUMENT;
    if (!dev->parent) return NVML_ERROR_NOT_SUPPORTED;
    *id = dev->d->compute_instance_id;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetDeviceHandleFromMigDeviceHandle(nvmlDevice_t migDevice, nvmlDevice_t *device)
{
    ENTER(migDevice, dev);
    if (!device || !dev->parent) return NVML_ERROR_INVALID_ARGUMENT;
    *device = dev->parent;
    return NVML_SUCCESS;
}
