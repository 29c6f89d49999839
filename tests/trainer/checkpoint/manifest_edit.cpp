#include "manifest_edit.h"

#include <stdexcept>

#include "checkpoint/manifest.h"
#include "checkpoint_manifest.pb.h"
#include "common/fs.h"

namespace asc::test {

std::vector<std::string> manifest_edits() {
  return {"slice-file-outside", "file-outside", "gap", "overlap", "past-end", "dtype", "shape",
          "format-99",          "other-step"};
}

void edit_manifest(const std::string& step_dir, const std::string& edit) {
  const std::string path = step_dir + "/" + kManifestFile;
  asclepius::checkpoint::Manifest m;
  if (!m.ParseFromString(read_file(path)) || m.tensors_size() == 0 || m.files_size() == 0)
    throw std::runtime_error(path + ": not a format-2 manifest");
  auto* t = m.mutable_tensors(0);
  auto* s = t->mutable_slices(0);
  if (edit == "slice-file-outside")
    s->set_file("../x");
  else if (edit == "file-outside")
    m.mutable_files(0)->set_name("../../../../etc/passwd");
  else if (edit == "gap")
    s->set_begin(1);
  else if (edit == "overlap")
    *t->add_slices() = t->slices(0);
  else if (edit == "past-end")
    s->set_offset(uint64_t(1) << 40);
  else if (edit == "dtype")
    s->set_dtype("F64");
  else if (edit == "shape")
    t->set_shape(0, t->shape(0) + 1);
  else if (edit == "format-99")
    m.set_format_version(99);
  else if (edit == "other-step")
    m.set_step(m.step() - 1);
  else
    throw std::runtime_error("edit_manifest: unknown edit '" + edit + "'");
  write_file_atomic(path, m.SerializeAsString());
}

}  // namespace asc::test
