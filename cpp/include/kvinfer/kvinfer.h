// Umbrella header of the kvinfer C++ API. Link kvinfer::kvinfer (find_package(kvinfer)).
#pragma once
#include "kvinfer/attention.h"
#include "kvinfer/errors.h"
#include "kvinfer/runtime.h"
#include "kvinfer/merge.h"
#include "kvinfer/page.h"
#include "kvinfer/plan.h"
#include "kvinfer/tensor.h"
