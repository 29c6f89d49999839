// manifest_edit.h — the tests' way to craft a damaged manifest (issue 23's crafted manifests):
// reads dir/manifest.pb, applies one named edit, writes it back. Compiled without libtorch (its
// bundled protobuf headers clash with the system's), so libtorch tests can use it.
#pragma once
#include <string>
#include <vector>

namespace asc::test {

// Edits: slice-file-outside, file-outside, gap, overlap, past-end, dtype, shape, format-99,
// other-step. Throws on an unknown name or an unreadable manifest.
void edit_manifest(const std::string& step_dir, const std::string& edit);
std::vector<std::string> manifest_edits();

}  // namespace asc::test
