/* telemrec's replay libnvidia-ml.so.1, part 2: readings that change over time (memory,
 * utilization, temperature, power, energy, clocks, fan, pstate, ECC, PCIe, processes, field
 * values), and the calls a trace holds nothing for, which answer NOT_SUPPORTED. */
#define _GNU_SOURCE
#include <string.h>
#include <time.h>

#include "nvml_replay.h"

/* nvml.h enums used below */
enum { NVML_TEMPERATURE_GPU = 0 };
enum { NVML_CLOCK_GRAPHICS = 0, NVML_CLOCK_SM = 1, NVML_CLOCK_MEM = 2, NVML_CLOCK_VIDEO = 3 };
enum { NVML_CLOCK_ID_CURRENT = 0, NVML_CLOCK_ID_COUNT = 4 };
enum { NVML_PCIE_UTIL_TX_BYTES = 0, NVML_PCIE_UTIL_RX_BYTES = 1 };
enum { NVML_MEMORY_ERROR_TYPE_CORRECTED = 0, NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1 };
enum { NVML_VOLATILE_ECC = 0, NVML_AGGREGATE_ECC = 1 };
enum { NVML_FEATURE_ENABLED = 1 };
enum { NVML_VALUE_TYPE_UNSIGNED_INT = 1, NVML_VALUE_TYPE_UNSIGNED_LONG_LONG = 3 };

/* Fields of the sample in effect now (one moment for all of them): the NVML error for the moment
 * or for a field, else the values. */
static nvmlReturn_t readings(nvmlDevice_t device, int gpu_only, int count, const int *fields, int64_t *values)
{
    ENTER(device, dev);
    if (gpu_only && dev->parent) return NVML_ERROR_NOT_SUPPORTED;
    struct moment at;
    nvmlReturn_t status = replay_now(dev, &at);
    for (int i = 0; status == NVML_SUCCESS && i < count; i++) status = replay_field(dev, &at, fields[i], &values[i]);
    return status;
}

static nvmlReturn_t reading(nvmlDevice_t device, int field, int64_t *value, int gpu_only)
{
    return readings(device, gpu_only, 1, &field, value);
}

static nvmlReturn_t reading_uint(nvmlDevice_t device, int field, unsigned int *out)
{
    int64_t value;
    if (!out) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t status = reading(device, field, &value, 1);
    if (status == NVML_SUCCESS) *out = (unsigned int)value;
    return status;
}

static nvmlReturn_t reading_ull(nvmlDevice_t device, int field, unsigned long long *out)
{
    int64_t value;
    if (!out) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t status = reading(device, field, &value, 1);
    if (status == NVML_SUCCESS) *out = (unsigned long long)value;
    return status;
}

/* -- memory ---------------------------------------------------------------------------------- */
/* v2 separates the driver's reservation from `used`; v1's `used` includes it (total - free). */
static nvmlReturn_t memory(nvmlDevice_t device, int64_t *total, int64_t *reserved, int64_t *free_, int64_t *used)
{
    ENTER(device, dev);
    struct moment at;
    nvmlReturn_t status = replay_now(dev, &at);
    if (status == NVML_SUCCESS) status = replay_field(dev, &at, F_MEM_TOTAL, total);
    if (status == NVML_SUCCESS) status = replay_field(dev, &at, F_MEM_FREE, free_);
    if (status != NVML_SUCCESS) return status;
    if (replay_field(dev, &at, F_MEM_USED, used) != NVML_SUCCESS) *used = TL_NONE;
    if (replay_field(dev, &at, F_MEM_RESERVED, reserved) != NVML_SUCCESS) *reserved = TL_NONE;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *mem)
{
    int64_t total, reserved, free_, used;
    nvmlReturn_t status = memory(device, &total, &reserved, &free_, &used);
    if (status != NVML_SUCCESS) return status;
    if (!mem) return NVML_ERROR_INVALID_ARGUMENT;
    mem->total = (unsigned long long)total;
    mem->free = (unsigned long long)free_;
    /* recorded through v1, `used` already is total - free; through v2 it excludes the reservation */
    mem->used = (unsigned long long)(reserved == TL_NONE && used != TL_NONE ? used : total - free_);
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *mem)
{
    int64_t total, reserved, free_, used;
    nvmlReturn_t status = memory(device, &total, &reserved, &free_, &used);
    if (status != NVML_SUCCESS) return status;
    if (!mem) return NVML_ERROR_INVALID_ARGUMENT;
    if (mem->version != NVML_MEMORY_V2) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    /* recorded through v1, i.e. by a driver before R515 that lacked this call: answer as it did */
    if (reserved == TL_NONE || used == TL_NONE) return NVML_ERROR_FUNCTION_NOT_FOUND;
    mem->total = (unsigned long long)total;
    mem->reserved = (unsigned long long)reserved;
    mem->free = (unsigned long long)free_;
    mem->used = (unsigned long long)used;
    return NVML_SUCCESS;
}

/* -- utilization, temperature, power, energy ---------------------------------------------------- */
EXPORT nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *utilization)
{
    static const int fields[2] = {F_UTIL_GPU, F_UTIL_MEM};
    int64_t values[2];
    nvmlReturn_t status = readings(device, 1, 2, fields, values);
    if (status != NVML_SUCCESS) return status;
    if (!utilization) return NVML_ERROR_INVALID_ARGUMENT;
    utilization->gpu = (unsigned int)values[0];
    utilization->memory = (unsigned int)values[1];
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, int sensorType, unsigned int *temp)
{
    ENTER_ALIVE(device, dev);
    (void)dev;
    if (sensorType != NVML_TEMPERATURE_GPU) return NVML_ERROR_INVALID_ARGUMENT;
    return reading_uint(device, F_TEMP, temp);
}

EXPORT nvmlReturn_t nvmlDeviceGetTemperatureV(nvmlDevice_t device, nvmlTemperature_v1_t *temperature)
{
    ENTER_ALIVE(device, dev);
    (void)dev;
    if (!temperature) return NVML_ERROR_INVALID_ARGUMENT;
    if (temperature->version != NVML_TEMPERATURE_V1) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    unsigned int value;
    nvmlReturn_t status = nvmlDeviceGetTemperature(device, temperature->sensorType, &value);
    if (status == NVML_SUCCESS) temperature->temperature = (int)value;
    return status;
}

EXPORT nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power)
{
    return reading_uint(device, F_POWER, power);
}

EXPORT nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int *limit)
{
    return reading_uint(device, F_POWER_LIMIT, limit);
}

EXPORT nvmlReturn_t nvmlDeviceGetPowerManagementLimit(nvmlDevice_t device, unsigned int *limit)
{
    return reading_uint(device, F_POWER_LIMIT, limit);
}

EXPORT nvmlReturn_t nvmlDeviceGetPowerManagementMode(nvmlDevice_t device, int *mode)
{
    unsigned int limit;
    if (!mode) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t status = reading_uint(device, F_POWER_LIMIT, &limit); /* a limit in force: management is on */
    if (status == NVML_SUCCESS) *mode = NVML_FEATURE_ENABLED;
    return status;
}

EXPORT nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device, unsigned long long *energy)
{
    return reading_ull(device, F_ENERGY, energy);
}

/* -- clocks, fan, performance state -------------------------------------------------------------- */
EXPORT nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t device, int type, unsigned int *clock)
{
    ENTER_ALIVE(device, dev);
    (void)dev;
    if (type < NVML_CLOCK_GRAPHICS || type > NVML_CLOCK_VIDEO) return NVML_ERROR_INVALID_ARGUMENT;
    if (type == NVML_CLOCK_SM) return reading_uint(device, F_CLOCK_SM, clock);
    if (type == NVML_CLOCK_MEM) return reading_uint(device, F_CLOCK_MEM, clock);
    return NVML_ERROR_NOT_SUPPORTED; /* graphics and video clocks are not recorded */
}

EXPORT nvmlReturn_t nvmlDeviceGetClock(nvmlDevice_t device, int type, int id, unsigned int *mhz)
{
    ENTER_ALIVE(device, dev);
    (void)dev;
    if (id < NVML_CLOCK_ID_CURRENT || id >= NVML_CLOCK_ID_COUNT) return NVML_ERROR_INVALID_ARGUMENT;
    if (id != NVML_CLOCK_ID_CURRENT) return NVML_ERROR_NOT_SUPPORTED;
    return nvmlDeviceGetClockInfo(device, type, mhz);
}

EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t device, unsigned long long *reasons)
{
    return reading_ull(device, F_EVENT_REASONS, reasons);
}

EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t device, unsigned long long *reasons)
{
    return reading_ull(device, F_EVENT_REASONS, reasons);
}

EXPORT nvmlReturn_t nvmlDeviceGetFanSpeed(nvmlDevice_t device, unsigned int *speed)
{
    return reading_uint(device, F_FAN, speed);
}

EXPORT nvmlReturn_t nvmlDeviceGetNumFans(nvmlDevice_t device, unsigned int *numFans)
{
    ENTER_ALIVE(device, dev);
    if (!numFans) return NVML_ERROR_INVALID_ARGUMENT;
    if (dev->parent || !(dev->d->present_mask & (1u << F_FAN))) return NVML_ERROR_NOT_SUPPORTED;
    *numFans = 1; /* the trace holds one fan speed per GPU */
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetFanSpeed_v2(nvmlDevice_t device, unsigned int fan, unsigned int *speed)
{
    unsigned int fans;
    nvmlReturn_t status = nvmlDeviceGetNumFans(device, &fans);
    if (status != NVML_SUCCESS) return status;
    if (fan >= fans) return NVML_ERROR_INVALID_ARGUMENT;
    return nvmlDeviceGetFanSpeed(device, speed);
}

EXPORT nvmlReturn_t nvmlDeviceGetPerformanceState(nvmlDevice_t device, int *pstate)
{
    return reading_uint(device, F_PSTATE, (unsigned int *)pstate);
}

EXPORT nvmlReturn_t nvmlDeviceGetPowerState(nvmlDevice_t device, int *pstate)
{
    return nvmlDeviceGetPerformanceState(device, pstate);
}

/* -- ECC and PCIe --------------------------------------------------------------------------------- */
EXPORT nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t device, int errorType, int counterType,
                                                unsigned long long *eccCounts)
{
    ENTER_ALIVE(device, dev);
    (void)dev;
    static const int fields[2][2] = {{F_ECC_CV, F_ECC_CA}, {F_ECC_UV, F_ECC_UA}};
    if (errorType < 0 || errorType > 1 || counterType < 0 || counterType > 1) return NVML_ERROR_INVALID_ARGUMENT;
    return reading_ull(device, fields[errorType][counterType], eccCounts);
}

EXPORT nvmlReturn_t nvmlDeviceGetEccMode(nvmlDevice_t device, int *current, int *pending)
{
    ENTER_ALIVE(device, dev);
    if (!current || !pending) return NVML_ERROR_INVALID_ARGUMENT;
    uint32_t ecc = (1u << F_ECC_CV) | (1u << F_ECC_UV) | (1u << F_ECC_CA) | (1u << F_ECC_UA);
    if (dev->parent || !(dev->d->present_mask & ecc)) return NVML_ERROR_NOT_SUPPORTED;
    *current = *pending = NVML_FEATURE_ENABLED; /* NVML counts ECC errors only with ECC on */
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetPcieThroughput(nvmlDevice_t device, int counter, unsigned int *value)
{
    ENTER_ALIVE(device, dev);
    (void)dev;
    if (counter == NVML_PCIE_UTIL_TX_BYTES) return reading_uint(device, F_PCIE_TX, value);
    if (counter == NVML_PCIE_UTIL_RX_BYTES) return reading_uint(device, F_PCIE_RX, value);
    return NVML_ERROR_INVALID_ARGUMENT;
}

EXPORT nvmlReturn_t nvmlDeviceGetPcieReplayCounter(nvmlDevice_t device, unsigned int *value)
{
    return reading_uint(device, F_PCIE_REPLAY, value);
}

/* -- processes ------------------------------------------------------------------------------------ */
static nvmlReturn_t processes(nvmlDevice_t device, uint32_t kind, unsigned int *count, void *infos, int version)
{
    ENTER(device, dev);
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    const struct replay_device *gpu = dev->parent ? dev->parent : dev;
    if (!gpu->d->has_processes) return NVML_ERROR_NOT_SUPPORTED;
    struct moment at;
    nvmlReturn_t status = replay_now(gpu, &at);
    if (status != NVML_SUCCESS) return status;
    const struct tl_proc *first = gpu->procs + gpu->proc_index[at.index];
    const struct tl_proc *last = gpu->procs + gpu->proc_index[at.index + 1];
    unsigned int n = 0;
    for (const struct tl_proc *p = first; p < last; p++) /* a MIG device lists its GPU instance's processes */
        if ((p->kinds & kind) && (!dev->parent || p->gpu_instance_id == dev->d->gpu_instance_id)) n++;
    if (n == 0) {
        *count = 0;
        return NVML_SUCCESS;
    }
    if (*count < n || !infos) {
        *count = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    unsigned int i = 0;
    for (const struct tl_proc *p = first; p < last; p++) {
        if (!(p->kinds & kind) || (dev->parent && p->gpu_instance_id != dev->d->gpu_instance_id)) continue;
        if (version == 1) {
            nvmlProcessInfo_v1_t *out = (nvmlProcessInfo_v1_t *)infos + i++;
            out->pid = p->pid;
            out->usedGpuMemory = p->used_memory;
        } else {
            nvmlProcessInfo_t *out = (nvmlProcessInfo_t *)infos + i++;
            out->pid = p->pid;
            out->usedGpuMemory = p->used_memory;
            out->gpuInstanceId = p->gpu_instance_id;
            out->computeInstanceId = p->compute_instance_id;
        }
    }
    *count = n;
    return NVML_SUCCESS;
}

#define PROCESS_CALLS(name, kind)                                                                      \
    EXPORT nvmlReturn_t name(nvmlDevice_t d, unsigned int *n, void *p) { return processes(d, kind, n, p, 1); } \
    EXPORT nvmlReturn_t name##_v2(nvmlDevice_t d, unsigned int *n, void *p) { return processes(d, kind, n, p, 2); } \
    EXPORT nvmlReturn_t name##_v3(nvmlDevice_t d, unsigned int *n, void *p) { return processes(d, kind, n, p, 3); }

PROCESS_CALLS(nvmlDeviceGetComputeRunningProcesses, PROC_COMPUTE)
PROCESS_CALLS(nvmlDeviceGetGraphicsRunningProcesses, PROC_GRAPHICS)

/* -- field values ------------------------------------------------------------------------------------ */
struct field_map {
    unsigned int id;
    int field, value_type;
};

/* NVML_FI_* ids (nvml.h) answered from the trace; any other id below NVML_FI_MAX is NOT_SUPPORTED */
static const struct field_map field_ids[] = {
    {3, F_ECC_CV, NVML_VALUE_TYPE_UNSIGNED_LONG_LONG},   /* NVML_FI_DEV_ECC_SBE_VOL_TOTAL */
    {4, F_ECC_UV, NVML_VALUE_TYPE_UNSIGNED_LONG_LONG},   /* NVML_FI_DEV_ECC_DBE_VOL_TOTAL */
    {5, F_ECC_CA, NVML_VALUE_TYPE_UNSIGNED_LONG_LONG},   /* NVML_FI_DEV_ECC_SBE_AGG_TOTAL */
    {6, F_ECC_UA, NVML_VALUE_TYPE_UNSIGNED_LONG_LONG},   /* NVML_FI_DEV_ECC_DBE_AGG_TOTAL */
    {82, F_MEM_TEMP, NVML_VALUE_TYPE_UNSIGNED_INT},      /* NVML_FI_DEV_MEMORY_TEMP */
    {83, F_ENERGY, NVML_VALUE_TYPE_UNSIGNED_LONG_LONG},  /* NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION */
    {94, F_PCIE_REPLAY, NVML_VALUE_TYPE_UNSIGNED_INT},   /* NVML_FI_DEV_PCIE_REPLAY_COUNTER */
    {185, F_POWER, NVML_VALUE_TYPE_UNSIGNED_INT},        /* NVML_FI_DEV_POWER_AVERAGE */
    {190, F_POWER_LIMIT, NVML_VALUE_TYPE_UNSIGNED_INT},  /* NVML_FI_DEV_POWER_CURRENT_LIMIT */
    {191, F_ENERGY, NVML_VALUE_TYPE_UNSIGNED_LONG_LONG}, /* NVML_FI_DEV_ENERGY */
};
#define NVML_FI_MAX 308u

EXPORT nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t device, int valuesCount, nvmlFieldValue_t *values)
{
    ENTER(device, dev);
    if (!values || valuesCount < 0) return NVML_ERROR_INVALID_ARGUMENT;
    struct moment at;
    nvmlReturn_t now_status = replay_now(dev, &at);
    if (now_status != NVML_SUCCESS && now_status != NVML_ERROR_NOT_SUPPORTED) return now_status;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long stamp = (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    for (int i = 0; i < valuesCount; i++) {
        nvmlFieldValue_t *v = &values[i];
        v->timestamp = stamp;
        v->latencyUsec = 0;
        v->value.ullVal = 0;
        v->nvmlReturn = v->fieldId == 0 || v->fieldId >= NVML_FI_MAX ? NVML_ERROR_INVALID_ARGUMENT
                                                                      : NVML_ERROR_NOT_SUPPORTED;
        for (size_t k = 0; k < sizeof field_ids / sizeof field_ids[0]; k++) {
            if (field_ids[k].id != v->fieldId || now_status != NVML_SUCCESS || dev->parent) continue;
            int64_t value;
            v->nvmlReturn = replay_field(dev, &at, field_ids[k].field, &value);
            v->valueType = field_ids[k].value_type;
            if (v->nvmlReturn != NVML_SUCCESS) break;
            if (v->valueType == NVML_VALUE_TYPE_UNSIGNED_INT) v->value.uiVal = (unsigned int)value;
            else v->value.ullVal = (unsigned long long)value;
            break;
        }
    }
    return NVML_SUCCESS;
}

/* -- calls a trace holds nothing for ---------------------------------------------------------------
 * Exported so callers see what a driver that cannot tell would say (NOT_SUPPORTED, after the usual
 * UNINITIALIZED / INVALID_ARGUMENT checks) rather than FUNCTION_NOT_FOUND. On Linux a real driver
 * answers the driver-model calls (a Windows feature) the same way. */
#pragma GCC diagnostic ignored "-Wunused-parameter"
#define NOT_RECORDED(name, params)                 \
    EXPORT nvmlReturn_t name params                \
    {                                              \
        ENTER_ALIVE(device, dev);                  \
        (void)dev;                                 \
        return NVML_ERROR_NOT_SUPPORTED;           \
    }

NOT_RECORDED(nvmlDeviceGetEncoderUtilization, (nvmlDevice_t device, unsigned int *u, unsigned int *period))
NOT_RECORDED(nvmlDeviceGetDecoderUtilization, (nvmlDevice_t device, unsigned int *u, unsigned int *period))
NOT_RECORDED(nvmlDeviceGetBAR1MemoryInfo, (nvmlDevice_t device, void *bar1))
NOT_RECORDED(nvmlDeviceGetSerial, (nvmlDevice_t device, char *serial, unsigned int length))
NOT_RECORDED(nvmlDeviceGetVbiosVersion, (nvmlDevice_t device, char *version, unsigned int length))
NOT_RECORDED(nvmlDeviceGetBoardId, (nvmlDevice_t device, unsigned int *id))
NOT_RECORDED(nvmlDeviceGetBrand, (nvmlDevice_t device, int *brand))
NOT_RECORDED(nvmlDeviceGetArchitecture, (nvmlDevice_t device, unsigned int *arch))
NOT_RECORDED(nvmlDeviceGetCudaComputeCapability, (nvmlDevice_t device, int *major, int *minor))
NOT_RECORDED(nvmlDeviceGetPersistenceMode, (nvmlDevice_t device, int *mode))
NOT_RECORDED(nvmlDeviceGetComputeMode, (nvmlDevice_t device, int *mode))
NOT_RECORDED(nvmlDeviceGetDisplayMode, (nvmlDevice_t device, int *mode))
NOT_RECORDED(nvmlDeviceGetDisplayActive, (nvmlDevice_t device, int *active))
NOT_RECORDED(nvmlDeviceGetDriverModel, (nvmlDevice_t device, int *current, int *pending))
NOT_RECORDED(nvmlDeviceGetDriverModel_v2, (nvmlDevice_t device, int *current, int *pending))
NOT_RECORDED(nvmlDeviceGetMaxClockInfo, (nvmlDevice_t device, int type, unsigned int *clock))
NOT_RECORDED(nvmlDeviceGetApplicationsClock, (nvmlDevice_t device, int type, unsigned int *clock))
NOT_RECORDED(nvmlDeviceGetMaxCustomerBoostClock, (nvmlDevice_t device, int type, unsigned int *clock))
NOT_RECORDED(nvmlDeviceGetSupportedClocksEventReasons, (nvmlDevice_t device, unsigned long long *reasons))
NOT_RECORDED(nvmlDeviceGetSupportedClocksThrottleReasons, (nvmlDevice_t device, unsigned long long *reasons))
NOT_RECORDED(nvmlDeviceGetPowerManagementDefaultLimit, (nvmlDevice_t device, unsigned int *limit))
NOT_RECORDED(nvmlDeviceGetPowerManagementLimitConstraints, (nvmlDevice_t device, unsigned int *lo, unsigned int *hi))
NOT_RECORDED(nvmlDeviceGetTemperatureThreshold, (nvmlDevice_t device, int threshold, unsigned int *temp))
NOT_RECORDED(nvmlDeviceGetCurrPcieLinkGeneration, (nvmlDevice_t device, unsigned int *gen))
NOT_RECORDED(nvmlDeviceGetCurrPcieLinkWidth, (nvmlDevice_t device, unsigned int *width))
NOT_RECORDED(nvmlDeviceGetMaxPcieLinkGeneration, (nvmlDevice_t device, unsigned int *gen))
NOT_RECORDED(nvmlDeviceGetMaxPcieLinkWidth, (nvmlDevice_t device, unsigned int *width))
NOT_RECORDED(nvmlDeviceGetMemoryBusWidth, (nvmlDevice_t device, unsigned int *width))
NOT_RECORDED(nvmlDeviceGetNumGpuCores, (nvmlDevice_t device, unsigned int *cores))
NOT_RECORDED(nvmlDeviceGetGpuOperationMode, (nvmlDevice_t device, int *current, int *pending))
NOT_RECORDED(nvmlDeviceGetMultiGpuBoard, (nvmlDevice_t device, unsigned int *multi))
NOT_RECORDED(nvmlDeviceGetProcessUtilization, (nvmlDevice_t device, void *samples, unsigned int *count,
                                               unsigned long long since))
NOT_RECORDED(nvmlDeviceGetMPSComputeRunningProcesses, (nvmlDevice_t device, unsigned int *count, void *infos))
NOT_RECORDED(nvmlDeviceGetMPSComputeRunningProcesses_v2, (nvmlDevice_t device, unsigned int *count, void *infos))
NOT_RECORDED(nvmlDeviceGetMPSComputeRunningProcesses_v3, (nvmlDevice_t device, unsigned int *count, void *infos))
