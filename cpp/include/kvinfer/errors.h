// kvinfer error reporting: every entry point reports failure by throwing kvinfer::Error.
// kind() says what went wrong, so bindings can map it (TypeError, ValueError, NotImplementedError,
// RuntimeError). Messages name the offending argument and what was expected.
#pragma once
#include <stdexcept>
#include <string>

#if defined(_WIN32)
#define KVINFER_API __declspec(dllexport)
#else
#define KVINFER_API __attribute__((visibility("default")))
#endif

namespace kvinfer {

enum class ErrorKind {
  kTypeError,    // wrong dtype or wrong kind of argument
  kValueError,   // wrong shape, stride, device, range or an inconsistent combination
  kNotCompiled,  // a valid configuration that this build does not contain
  kCudaError,    // the CUDA runtime reported an error
};

class KVINFER_API Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& msg) : std::runtime_error(msg), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

}  // namespace kvinfer
