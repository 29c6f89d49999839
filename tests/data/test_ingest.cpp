// Ingest: CSV (quoted commas, quotes, newlines; CRLF), JSONL and JSON arrays; the `patient`
// note column of the released CSV; every bad-record case named with file and record/line.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/error.h"
#include "data/ingest.h"

using namespace asc;
using testing::HasSubstr;

namespace {
std::string err(const std::string& data, const std::string& fmt, IngestOptions o = {}) {
  try {
    parse_note_records(data, fmt, "f." + fmt, o);
  } catch (const Error& e) {
    return e.message();
  }
  return "<no error>";
}
}  // namespace

TEST(Ingest, CsvQuotedFieldsWithCommasQuotesAndNewlines) {
  const std::string csv =
      "patient_id,note,question,answer,task\r\n"
      "7,\"Line one, with comma\nLine \"\"two\"\"\n\",\"Q?\",\"A.\",Summarization\r\n"
      "8,  spaced note  ,q,a,Paraphrasing\n";
  IngestReport rep;
  auto r = parse_note_records(csv, "csv", "x.csv", {}, &rep);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].id, "7");
  EXPECT_EQ(r[0].note, "Line one, with comma\nLine \"two\"\n");
  EXPECT_EQ(r[0].question, "Q?");
  EXPECT_EQ(r[0].task, "Summarization");
  EXPECT_EQ(r[1].note, "  spaced note  ");  // no trimming (pandas keeps spaces)
  EXPECT_EQ(rep.records, 2);
}

TEST(Ingest, ReleasedLayoutMapsPatientToNote) {
  auto r = parse_note_records("patient_id,patient,question,answer,task\n1,the note,q,a,t\n", "csv",
                              "s.csv", {});
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].note, "the note");
  IngestOptions o;
  o.columns["note"] = "text";
  auto r2 = parse_note_records("text,question\nabc,q\n", "csv", "s.csv", o);
  EXPECT_EQ(r2[0].note, "abc");
  auto j = parse_note_records(R"({"patient": "n1", "question": "q"})"
                              "\n",
                              "jsonl", "s.jsonl", {});
  EXPECT_EQ(j[0].note, "n1");
}

TEST(Ingest, JsonLinesAndArray) {
  auto r = parse_note_records(
      "{\"note\":\"a\\nb\",\"question\":\"q\",\"answer\":\"x\",\"task\":\"QA\",\"id\":5}\n\n"
      "{\"note\":\"c\"}\n",
      "jsonl", "f.jsonl", {});
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].note, "a\nb");
  EXPECT_EQ(r[0].id, "5");
  EXPECT_EQ(r[1].record, 2);
  auto a = parse_note_records(R"([{"note":"x"},{"note":"y","answer":"z"}])", "json", "f.json", {});
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[1].answer, "z");
}

TEST(Ingest, BadRecordsNameFileAndPlace) {
  EXPECT_EQ(err("note,question\n\"\",q\n", "csv"), "f.csv: record 1 (line 2): empty note");
  EXPECT_EQ(err("note,question\nok,q\nbad\n", "csv"),
            "f.csv: record 2 (line 3): 1 fields but the header has 2");
  EXPECT_THAT(err("text,question\nx,q\n", "csv"),
              HasSubstr("f.csv: header has no column 'note' (columns: text, question)"));
  EXPECT_EQ(err("note\n\"a\nb\nc\"\n\"\xff\"\n", "csv"),
            "f.csv: record 2 (line 5): invalid UTF-8 in note");
  EXPECT_THAT(err("note\n\"unterminated\n", "csv"), HasSubstr("f.csv: malformed CSV"));
  EXPECT_EQ(err(std::string("note,question\nok,q\na\0b,q\n", 25), "csv"),
            "f.csv: record 2 (line 3): a NUL byte in note");
  EXPECT_EQ(err("{\"note\":\"a\"}\n{\"note\": \n", "jsonl").substr(0, 36),
            "f.jsonl: line 2: invalid JSON: [json");
  EXPECT_EQ(err("{\"question\":\"a\"}\n", "jsonl"), "f.jsonl: line 1: missing column 'note'");
  EXPECT_EQ(err("{\"note\":\"one\",\"note\":\"two\"}\n", "jsonl"),
            "f.jsonl: line 1: duplicate key 'note'");
  EXPECT_THAT(err("[{\"note\":\"a\",\"id\":\"1\",\"id\":\"2\"}]", "json"),
              HasSubstr("f.json: duplicate key 'id'"));
  EXPECT_EQ(err("[1]", "json"), "f.json: record 1: not a JSON object");
  EXPECT_EQ(err("{}", "json"), "f.json: expected a JSON array of objects");
  IngestOptions qa;
  qa.require_qa = true;
  EXPECT_EQ(err("note,question,answer\nn,q,\n", "csv", qa),
            "f.csv: record 1 (line 2): empty answer");
  EXPECT_THAT(err("note\nn\n", "csv", qa), HasSubstr("header has no column 'question'"));
}

TEST(Ingest, LineNumbersSurviveBlankLinesCrlfAndQuotedNewlines) {
  EXPECT_EQ(err("note,q\n\nok,1\n\n\n\"two\nlines\",2\n,3\n", "csv"),
            "f.csv: record 3 (line 8): empty note");
  EXPECT_EQ(err("note,q\r\n\r\nok,1\r\n,2\r\n", "csv"), "f.csv: record 2 (line 4): empty note");
}

TEST(Ingest, SkipBadCountsAndReports) {
  IngestOptions o;
  o.skip_bad = true;
  IngestReport rep;
  auto r = parse_note_records("note,q\nok,1\n,2\nalso ok,3\nshort\n", "csv", "f.csv", o, &rep);
  EXPECT_EQ(r.size(), 2u);
  EXPECT_EQ(rep.records, 2);
  EXPECT_EQ(rep.skipped, 2);
  ASSERT_EQ(rep.errors.size(), 2u);
  EXPECT_EQ(rep.errors[0], "f.csv: record 2 (line 3): empty note");
}

TEST(Ingest, Utf8Validation) {
  EXPECT_TRUE(valid_utf8("plain ascii"));
  EXPECT_TRUE(valid_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
  EXPECT_FALSE(valid_utf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(valid_utf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(valid_utf8("\xf4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_FALSE(valid_utf8("\xe2\x82"));          // truncated
}

// Issue 23, silent acceptance: what the file or the mapping does not say clearly is refused.
TEST(Ingest, AColumnWeReadMayNotBeNamedTwice) {
  EXPECT_THAT(err("note,note\nfirst,second\n", "csv"),
              HasSubstr("header names two columns 'note' (columns 1 and 2)"));
  // A duplicate among the columns we do not read is harmless.
  auto r = parse_note_records("note,x,x\nthe note,1,2\n", "csv", "f.csv", {});
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].note, "the note");
}

TEST(Ingest, ColumnMappingsMustNameKnownColumnsThatExist) {
  IngestOptions unknown;
  unknown.columns["foo"] = "bar";
  EXPECT_THAT(err("note\nx\n", "csv", unknown), HasSubstr("--column foo=bar: unknown logical"));
  EXPECT_THAT(err("{\"note\":\"x\"}\n", "jsonl", unknown), HasSubstr("unknown logical column"));
  IngestOptions missing;
  missing.columns["task"] = "kind";
  EXPECT_THAT(err("note,task\nx,t\n", "csv", missing),
              HasSubstr("--column task=kind: the header has no column 'kind'"));
}

TEST(Ingest, JsonFieldsMustBeStrings) {
  EXPECT_THAT(err("{\"note\":{\"a\":1}}\n", "jsonl"),
              HasSubstr("line 1: field 'note' is a JSON object; expected a string"));
  IngestOptions qa;
  qa.require_qa = true;
  EXPECT_THAT(err("{\"note\":\"n\",\"question\":true,\"answer\":\"a\"}\n", "jsonl", qa),
              HasSubstr("field 'question' is a JSON boolean"));
  EXPECT_THAT(err("[{\"note\":\"n\",\"question\":\"q\",\"answer\":1.5e300}]", "json", qa),
              HasSubstr("record 1: field 'answer' is a JSON number"));
  EXPECT_THAT(err("{\"note\":\"n\",\"id\":[1]}\n", "jsonl"),
              HasSubstr("expected a string or an integer"));
  // Ids may be integers, written as they are; null is an empty field.
  auto r = parse_note_records("{\"note\":\"n\",\"id\":42,\"task\":null}\n", "jsonl", "f", {});
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].id, "42");
  EXPECT_EQ(r[0].task, "");
}

// A note nested 100,000 levels deep (it used to be stringified, recursively: a stack overflow)
// is one bad record: refused while parsing, past 512 levels; a shallow array is named as such.
TEST(Ingest, DeeplyNestedJsonIsABadRecordNotACrash) {
  const int depth = 100000;
  const std::string deep = "{\"note\":" + std::string(depth, '[') + std::string(depth, ']') + "}\n";
  EXPECT_EQ(err(deep, "jsonl"), "f.jsonl: line 1: JSON nested deeper than 512 levels");
  EXPECT_THAT(err("{\"note\":[[1]]}\n", "jsonl"), HasSubstr("field 'note' is a JSON array"));
}

// MIMIC de-identification placeholders, as upstream's convert_deid_tag.py converts them: the
// first category named wins, dates and month names stay as their text, digits become [Reg#],
// blanks vanish, the pieces are joined with a space around each placeholder; a placeholder
// across a line is not one; one of no known kind is an error (skipped and counted with
// --skip-bad).
TEST(Ingest, DeidPlaceholdersConvertAsUpstream) {
  std::string why;
  EXPECT_EQ(convert_deid_tags("Mr. [**Last Name (NamePattern1) 123**] was seen at "
                              "[**Hospital1 18**] on [**2101-10-20**].",
                              &why),
            "Mr.  [Name]  was seen at  [Company]  on  2101-10-20 .");
  EXPECT_EQ(convert_deid_tags("[**123456**]", &why), "[Reg#]");
  EXPECT_EQ(convert_deid_tags("Call [**Telephone/Fax (1) 1234**]", &why), "Call  [#]");
  EXPECT_EQ(convert_deid_tags("on [**10-20**] and [**10/20**]", &why), "on  10-20  and  10/20");
  EXPECT_EQ(convert_deid_tags("[**Month (only) 2**] [**January 2**]", &why), "[MO]   January 2");
  EXPECT_EQ(convert_deid_tags("a [** **] b", &why), "a   b");              // "a " + " " + " b"
  EXPECT_EQ(convert_deid_tags("[**known lastname 1**]", &why), "[Name]");  // lower-case form
  EXPECT_EQ(convert_deid_tags("[**Last\nName**] stays", &why), "[**Last\nName**] stays");
  EXPECT_TRUE(why.empty());
  EXPECT_EQ(convert_deid_tags("x [**foo bar**] y", &why), "");
  EXPECT_THAT(why, HasSubstr("[**foo bar**]"));
  // Through ingest: the note is converted; an unknown placeholder is a bad record.
  IngestOptions o;
  o.convert_deid = true;
  o.skip_bad = true;
  IngestReport rep;
  auto recs = parse_note_records(
      "{\"note\": \"Seen by Dr. [**First Name4 (NamePattern1) 1**].\"}\n"
      "{\"note\": \"Odd [**zzz**].\"}\n",
      "jsonl", "mimic.jsonl", o, &rep);
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].note, "Seen by Dr.  [Name] .");
  EXPECT_EQ(rep.skipped, 1);
  EXPECT_THAT(rep.errors[0], HasSubstr("of no known kind"));
}
