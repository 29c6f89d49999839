// objects.h — the small object collectives the trainer, the checkpointer and the exporter use to
// agree on things that are not tensors: a string from one rank, every rank's string, and an
// error any rank hit, so that every rank fails alike with the same message instead of one rank
// leaving the others waiting. Built on the tensor collectives of a host (MPI) communicator;
// `comm` null means one process (each call is then the identity).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "comm/communicator.h"

namespace asc::comm {

// `s` as `root` has it, on every rank.
std::string broadcast_string(Communicator* comm, const std::string& s, int root = 0);

// Every rank's string, in rank order. timeout_s > 0: a barrier with that deadline first (ranks
// may arrive far apart, e.g. after writing a checkpoint shard), restarted by each change of
// `progress` when given (BarrierOptions::progress).
std::vector<std::string> all_gather_strings(Communicator* comm, const std::string& mine,
                                            double timeout_s = 0,
                                            const std::function<int64_t()>& progress = {});

// Throws on every rank alike ("WHAT failed: rank r: error; ...") when any rank's `error` is not
// empty; returns on every rank otherwise. A collective (all_gather_strings with timeout_s).
void agree_on_error(Communicator* comm, const std::string& what, const std::string& error,
                    double timeout_s = 0, const std::function<int64_t()>& progress = {});

// Runs `fn` on `root` only and gives its result to every rank; an exception on `root` is
// rethrown on every rank with the same message (asc::Error).
std::string on_root(Communicator* comm, const std::function<std::string()>& fn, int root = 0);

}  // namespace asc::comm
