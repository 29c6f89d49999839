// output_path.h — one rule for where a command may write, so no command destroys its own inputs
// or a checkpoint (every command that writes a file or directory checks its output with it
// before reading anything):
//   - a file output is absent or a regular file: never a directory, device, FIFO, socket or
//     symbolic link (a rename over a symlink or device would replace it, not write through it);
//   - a directory output is absent or a real directory;
//   - an output is none of the command's inputs (the same file by device and inode; for a
//     directory output, an input inside it; for a file output, a file already inside an input
//     directory such as the model's) and no other output of the command (an input not there
//     yet, by path);
//   - an output lies inside no training checkpoint (a step directory: manifest.pb or
//     trainer_state.json), is none of a run directory's own entries (`latest`, recipe.yaml,
//     metrics.jsonl, tensorboard/, profile/, step-*) and, for a directory, is no run directory
//     (holding `latest` or step-NNNNNNN directories); other names in a run directory are free.
// Each refusal is one error naming the option, the path and why, with a hint.
#pragma once

#include <string>
#include <vector>

namespace asc {

void check_output_file(const std::string& option, const std::string& out,
                       const std::vector<std::string>& inputs);
void check_output_dir(const std::string& option, const std::string& out,
                      const std::vector<std::string>& inputs);

// Whether `dir` is a training step checkpoint (our format 1 or 2), or a run directory holding them.
bool is_step_checkpoint_dir(const std::string& dir);
bool is_run_dir(const std::string& dir);

}  // namespace asc
