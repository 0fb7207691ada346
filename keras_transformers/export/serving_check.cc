// What TF Serving does with an exported model, in 100 lines of C++: load the SavedModel with
// tag "serve" (tensorflow::LoadSavedModel), look up a signature, and run it with
// Session::Run. Built by keras_transformers.export.build_serving_check against the
// TensorFlow wheel's headers and shared libraries.
//
// Usage: serving_check EXPORT_DIR SIGNATURE INPUT_DIR OUTPUT_DIR [OP_LIBRARY.so ...]
//   Each input KEY of the signature is read from INPUT_DIR/KEY.pb (a binary TensorProto);
//   each output KEY is written to OUTPUT_DIR/KEY.pb. OP_LIBRARY files (tensorflow-text's op
//   libraries) are loaded first with dlopen(RTLD_GLOBAL), standing in for TF Serving's static
//   link of tensorflow-text.
//
// Tag and signature are plain strings: the wheel ships no tag_constants.h.

#include <dlfcn.h>

#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "tensorflow/cc/saved_model/loader.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor.pb.h"
#include "tensorflow/core/platform/env.h"
#include "tensorflow/core/protobuf/meta_graph.pb.h"
#include "tensorflow/core/public/session.h"

namespace {

int Fail(const std::string& message) {
  std::cerr << "serving_check: " << message << std::endl;
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    return Fail("usage: serving_check EXPORT_DIR SIGNATURE INPUT_DIR OUTPUT_DIR [OP_LIBRARY.so ...]");
  }
  const std::string export_dir = argv[1], signature_name = argv[2];
  const std::string input_dir = argv[3], output_dir = argv[4];

  for (int i = 5; i < argc; ++i) {
    if (dlopen(argv[i], RTLD_NOW | RTLD_GLOBAL) == nullptr) {
      return Fail(std::string("cannot load op library ") + argv[i] + ": " + dlerror());
    }
  }

  tensorflow::SavedModelBundle bundle;
  absl::Status status = tensorflow::LoadSavedModel(
      tensorflow::SessionOptions(), tensorflow::RunOptions(), export_dir, {"serve"}, &bundle);
  if (!status.ok()) return Fail("LoadSavedModel: " + std::string(status.message()));

  const auto& signatures = bundle.meta_graph_def.signature_def();
  auto found = signatures.find(signature_name);
  if (found == signatures.end()) return Fail("no signature named " + signature_name);
  const tensorflow::SignatureDef& signature = found->second;

  std::vector<std::pair<std::string, tensorflow::Tensor>> feeds;
  for (const auto& [key, info] : signature.inputs()) {
    tensorflow::TensorProto proto;
    status = tensorflow::ReadBinaryProto(tensorflow::Env::Default(), input_dir + "/" + key + ".pb", &proto);
    if (!status.ok()) return Fail("input " + key + ": " + std::string(status.message()));
    tensorflow::Tensor tensor;
    if (!tensor.FromProto(proto)) return Fail("input " + key + ": not a valid TensorProto");
    feeds.emplace_back(info.name(), tensor);
  }

  std::vector<std::string> keys, fetches;
  for (const auto& [key, info] : signature.outputs()) {
    keys.push_back(key);
    fetches.push_back(info.name());
  }
  std::vector<tensorflow::Tensor> outputs;
  status = bundle.session->Run(feeds, fetches, {}, &outputs);
  if (!status.ok()) return Fail("Session::Run: " + std::string(status.message()));

  for (size_t i = 0; i < keys.size(); ++i) {
    tensorflow::TensorProto proto;
    outputs[i].AsProtoField(&proto);  // typed fields: strings cannot go in tensor_content
    status = tensorflow::WriteBinaryProto(tensorflow::Env::Default(), output_dir + "/" + keys[i] + ".pb", proto);
    if (!status.ok()) return Fail("output " + keys[i] + ": " + std::string(status.message()));
  }
  std::cout << "ran " << signature_name << ": " << feeds.size() << " inputs, " << keys.size() << " outputs"
            << std::endl;
  return 0;
}
