/* telemrec's replay libnvidia-ml.so.1: shared declarations of nvml_replay.c and nvml_replay_queries.c.
 *
 * The library serves the GPUs of a recorded trace. telemrec (telemrec/emulate/nvml_timeline.py)
 * writes what every device answers at every trace time into a timeline file; the library maps it
 * read-only at nvmlInit (path in TELEMREC_NVML_TIMELINE) and answers each call from the sample in
 * effect at trace time elapsed x speed, elapsed counting from the header's CLOCK_MONOTONIC anchor.
 * No driver, no GPU, no HDF5.
 *
 * The types below follow nvml.h (NVML API 12.x) field for field, written out here so the build
 * needs no NVIDIA header.
 */
#ifndef TELEMREC_NVML_REPLAY_H
#define TELEMREC_NVML_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#define EXPORT __attribute__((visibility("default")))

/* -- NVML types (nvml.h) ------------------------------------------------------------------- */
typedef int nvmlReturn_t;
enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_NOT_FOUND = 6,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
    NVML_ERROR_FUNCTION_NOT_FOUND = 13,
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
    NVML_ERROR_UNKNOWN = 999,
};

typedef struct replay_device *nvmlDevice_t;

typedef struct {
    unsigned long long total, free, used;
} nvmlMemory_t;

typedef struct {
    unsigned int version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;
#define NVML_MEMORY_V2 ((unsigned int)(sizeof(nvmlMemory_v2_t) | (2u << 24)))

typedef struct {
    unsigned int gpu, memory;
} nvmlUtilization_t;

typedef struct {
    unsigned int version;
    int sensorType;
    int temperature;
} nvmlTemperature_v1_t;
#define NVML_TEMPERATURE_V1 ((unsigned int)(sizeof(nvmlTemperature_v1_t) | (1u << 24)))

typedef struct {
    char busIdLegacy[16];
    unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

typedef struct { /* nvmlDeviceGetPciInfo (v1) */
    char busId[16];
    unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
    unsigned int reserved0, reserved1, reserved2, reserved3;
} nvmlPciInfo_v1_t;

typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
} nvmlProcessInfo_v1_t;

typedef struct { /* the v2 and v3 calls share this layout */
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId, computeInstanceId;
} nvmlProcessInfo_t;

typedef union {
    double dVal;
    unsigned int uiVal;
    unsigned long ulVal;
    unsigned long long ullVal;
    long long sllVal;
    int siVal;
    unsigned short usVal;
} nvmlValue_t;

typedef struct {
    unsigned int fieldId, scopeId;
    long long timestamp, latencyUsec;
    int valueType;
    nvmlReturn_t nvmlReturn;
    nvmlValue_t value;
} nvmlFieldValue_t;

/* -- the timeline file (little-endian, written by nvml_timeline.py) ------------------------- */
#define TL_MAGIC "TRNVML01"
#define TL_VERSION 1u
#define TL_NONE INT64_MIN /* a field the trace holds as None, or not at all: NOT_SUPPORTED */

enum tl_field { /* the order of nvml_timeline.FIELDS */
    F_UTIL_GPU, F_UTIL_MEM, F_MEM_TOTAL, F_MEM_USED, F_MEM_FREE, F_MEM_RESERVED, F_TEMP,
    F_POWER, F_POWER_LIMIT, F_ENERGY, F_CLOCK_SM, F_CLOCK_MEM, F_PCIE_TX, F_PCIE_RX,
    F_EVENT_REASONS, F_ECC_CV, F_ECC_UV, F_ECC_CA, F_ECC_UA, F_FAN, F_PSTATE, F_MEM_TEMP,
    F_PCIE_REPLAY,
    TL_NFIELDS
};

struct tl_header {
    char magic[8];
    uint32_t version, header_size, n_devices, n_gpus, n_fields, device_size;
    int64_t anchor_mono_ns; /* CLOCK_MONOTONIC when the replay started: elapsed counts from here */
    double speed;           /* trace seconds per elapsed second */
    int64_t period_ns;      /* one pass over the window, the gap to the next pass included */
    int64_t loops;          /* passes; <= 0: forever */
    int64_t end_ns;         /* the last sample of the window (trace time, window start = 0) */
    int32_t cuda_version;   /* 12040 for 12.4; 0 unknown */
    uint32_t reserved;
    char driver_version[80], nvml_version[80]; /* "" unknown */
};

struct tl_device { /* GPUs first (NVML index order), then MIG devices */
    char name[96], uuid[96], bus_id[32], bus_id_legacy[16];
    uint32_t pci_domain, pci_bus, pci_device, pci_device_id, pci_subsystem_id;
    int32_t minor;    /* -1 unknown */
    int32_t parent;   /* -1 for a GPU, else the table index of the MIG device's GPU */
    int32_t mig_mode; /* -1 unknown, 0 disabled, 1 enabled */
    uint32_t gpu_instance_id, compute_instance_id, first_child, n_children;
    uint32_t has_processes; /* 0: the trace did not record processes */
    uint32_t n_samples;
    uint32_t present_mask; /* bit f: some sample holds field f */
    uint32_t reserved;
    /* offsets from the start of the file: int64 times[n], int64 values[n][TL_NFIELDS],
     * int32 status[n] (an NVML error every call returns, e.g. GPU_IS_LOST; 0 none),
     * uint32 proc_index[n + 1] into the tl_proc array, int64 loop_increment[TL_NFIELDS] */
    uint64_t times_off, values_off, status_off, proc_index_off, procs_off, increment_off;
};

#define PROC_COMPUTE 1u
#define PROC_GRAPHICS 2u
#define NO_INSTANCE 0xFFFFFFFFu
#define VALUE_NOT_AVAILABLE 0xFFFFFFFFFFFFFFFFull

struct tl_proc {
    uint32_t pid, kinds;      /* PROC_COMPUTE | PROC_GRAPHICS */
    uint64_t used_memory;     /* VALUE_NOT_AVAILABLE when unknown */
    uint32_t gpu_instance_id, compute_instance_id; /* NO_INSTANCE without MIG */
};

_Static_assert(sizeof(struct tl_header) == 240, "tl_header layout");
_Static_assert(sizeof(struct tl_device) == 352, "tl_device layout");
_Static_assert(sizeof(struct tl_proc) == 24, "tl_proc layout");
_Static_assert(sizeof(nvmlFieldValue_t) == 40, "nvmlFieldValue_t layout");
_Static_assert(sizeof(nvmlProcessInfo_t) == 24, "nvmlProcessInfo_t layout");
_Static_assert(sizeof(nvmlPciInfo_t) == 68, "nvmlPciInfo_t layout");

/* -- runtime ------------------------------------------------------------------------------- */
struct replay_device {
    const struct tl_device *d;
    const int64_t *times, *values, *increment;
    const int32_t *status;
    const uint32_t *proc_index;
    const struct tl_proc *procs;
    struct replay_device *parent; /* NULL for a GPU */
    unsigned int table_index;
};

/* The sample a device answers from now: index, loop pass, and the error every call returns then. */
struct moment {
    uint32_t index;
    int64_t pass;
};

extern const struct tl_header *replay_header;
extern struct replay_device *replay_devices;

nvmlReturn_t replay_enter(nvmlDevice_t device, struct replay_device **out);
nvmlReturn_t replay_now(const struct replay_device *dev, struct moment *at);
nvmlReturn_t replay_alive(const struct replay_device *dev);
nvmlReturn_t replay_field(const struct replay_device *dev, const struct moment *at, int field, int64_t *out);
nvmlReturn_t replay_copy_string(const char *src, size_t src_size, char *dst, unsigned int length);
int replay_initialized(void);

/* ENTER, then the error a lost device answers every call with (GPU_IS_LOST, ...) */
#define ENTER_ALIVE(handle, dev)                                   \
    ENTER(handle, dev);                                            \
    do {                                                           \
        nvmlReturn_t alive_status_ = replay_alive(dev);            \
        if (alive_status_ != NVML_SUCCESS) return alive_status_;   \
    } while (0)

#define ENTER(handle, dev)                                        \
    struct replay_device *dev;                                    \
    do {                                                          \
        nvmlReturn_t enter_status_ = replay_enter((handle), &dev); \
        if (enter_status_ != NVML_SUCCESS) return enter_status_;   \
    } while (0)

#endif
