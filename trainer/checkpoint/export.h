// export.h — a Hugging Face directory written by every rank at once, with no gather: the file
// layout (which tensors go to which safetensors file, each header, each tensor's byte offset)
// follows from the config, the dtype and the shard size alone, so every rank computes it. Rank 0
// creates each file at its final size with its header; every rank then reads its share of every
// tensor (an even split of the elements) from the checkpoint by byte range, converts it and
// writes it at its offset (pwrite); after all ranks have synced, rank 0 renames the files into
// place. No process holds more than one tensor share at a time. The result is byte-identical to
// `save_hf_dir` (the one-process export) for the same source, dtype and shard size.
#pragma once

#include <cstdint>
#include <string>

#include <c10/core/ScalarType.h>

namespace asc {

namespace comm {
class Communicator;
}

struct ExportStats {
  uint64_t bytes_read = 0, bytes_written = 0;  // by this rank
};

// `src`: a step directory (either format) or a Hugging Face directory.
ExportStats export_hf_parallel(const std::string& src, const std::string& out_dir,
                               c10::ScalarType dtype, uint64_t max_shard_bytes,
                               comm::Communicator& comm);

}  // namespace asc
