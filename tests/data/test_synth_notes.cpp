// Synthetic notes: deterministic for a seed; every task type; answers grounded in the note;
// splits in the released CSV layout that our reader reads back.
#include <gmock/gmock.h>

#include <cstdint>
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "common/fs.h"
#include "data/ingest.h"
#include "data/synth_notes.h"

using namespace asc;
using testing::HasSubstr;

TEST(SynthNotes, DeterministicForASeedAndDifferentAcrossSeeds) {
  auto a = synthesize_notes({20, 5, 2}), b = synthesize_notes({20, 5, 2}),
       c = synthesize_notes({20, 6, 2});
  ASSERT_EQ(a.size(), 40u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].note, b[i].note);
    EXPECT_EQ(a[i].answer, b[i].answer);
  }
  EXPECT_NE(a[0].note, c[0].note);
}

TEST(SynthNotes, SectionsTasksAndGroundedAnswers) {
  auto ex = synthesize_notes({64, 1, 8});
  std::set<std::string> tasks, notes;
  for (const auto& e : ex) {
    tasks.insert(e.task);
    notes.insert(e.note);
    for (const char* section :
         {"Admission Date:", "Discharge Date:", "Chief Complaint:", "History of Present Illness:",
          "Hospital Course:", "Discharge Diagnoses:", "Discharge Medications:", "Follow-up:"})
      EXPECT_THAT(e.note, HasSubstr(section));
    EXPECT_FALSE(e.question.empty());
    EXPECT_FALSE(e.answer.empty());
    if (e.task == "Abbreviation Expansion") {  // the abbreviation asked about is in the note
      auto q1 = e.question.find('"'), q2 = e.question.find('"', q1 + 1);
      EXPECT_THAT(e.note, HasSubstr(e.question.substr(q1 + 1, q2 - q1 - 1)));
    }
    if (e.task == "Relation Extraction") {  // the drug asked about is listed with its dose
      auto pos = e.question.find(" of ") + 4;
      std::string drug = e.question.substr(pos, e.question.find(" was prescribed") - pos);
      EXPECT_THAT(e.note, HasSubstr(drug + " ")) << e.question;
      EXPECT_THAT(e.answer, HasSubstr(drug));
    }
    if (e.task == "Named Entity Recognition") {  // every listed drug appears in the note
      std::string list = e.answer.substr(0, e.answer.size() - 1);
      for (size_t p; (p = list.find(" and ")) != std::string::npos;) list.replace(p, 5, ", ");
      for (size_t start = 0; start < list.size();) {
        size_t comma = std::min(list.find(", ", start), list.size());
        EXPECT_THAT(e.note, HasSubstr(list.substr(start, comma - start)));
        start = comma + 2;
      }
    }
  }
  EXPECT_EQ(tasks.size(), 8u);
  EXPECT_EQ(notes.size(), 64u);  // 8 questions share one note each
}

TEST(SynthNotes, SplitsRoundTripThroughTheCsvReader) {
  auto ex = synthesize_notes({30, 3, 2});
  auto dir = (std::filesystem::temp_directory_path() / "asc_synth_split").string();
  std::filesystem::remove_all(dir);
  auto s = write_synth_splits(ex, dir, 10);
  EXPECT_EQ(s.train_rows + s.heldout_rows, 60);
  EXPECT_EQ(s.heldout_rows, 6);  // notes 9, 19, 29 x 2 questions
  IngestOptions o;
  o.require_qa = true;
  auto train = read_note_records(dir + "/train.csv", o),
       held = read_note_records(dir + "/heldout.csv", o);
  ASSERT_EQ(int64_t(train.size()), s.train_rows);
  std::set<std::string> train_ids;
  for (const auto& r : train) train_ids.insert(r.id);
  for (const auto& r : held) EXPECT_EQ(train_ids.count(r.id), 0u) << "a note in both splits";
  EXPECT_EQ(train[0].note, ex[0].note);
  EXPECT_EQ(train[0].answer, ex[0].answer);
  std::filesystem::remove_all(dir);
}
