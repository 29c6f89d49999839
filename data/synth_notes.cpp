#include "data/synth_notes.h"

#include <cstdint>

#include <filesystem>
#include <map>
#include <random>
#include <set>

#include <fmt/format.h>

#include "common/error.h"
#include "common/fs.h"

namespace asc {
namespace {

struct Med {
  const char* name;
  const char* dose;
  const char* freq;       // abbreviation as written in the note
  const char* freq_long;  // its expansion
};

struct Condition {
  const char* diagnosis;         // as written under Discharge Diagnoses
  const char* abbrev;            // abbreviation used in the note ("" for none)
  const char* plain;             // plain-language paraphrase
  const char* complaint;         // chief complaint
  const char* complaint_abbrev;  // "" or an abbreviation used in the complaint ("SOB")
  const char* complaint_long;
  const char* test;       // key investigation
  const char* finding;    // its result
  const char* procedure;  // main intervention
  Med med;                // the discharge medication for it
  const char* specialty;  // follow-up clinic
};

const Condition kConditions[] = {
    {"Community-acquired pneumonia",
     "CAP",
     "a lung infection caught outside the hospital",
     "fever and productive cough",
     "",
     "",
     "chest X-ray (CXR)",
     "a right lower lobe consolidation",
     "intravenous antibiotics",
     {"amoxicillin-clavulanate", "875 mg", "BID", "twice daily"},
     "pulmonology"},
    {"Acute exacerbation of chronic obstructive pulmonary disease",
     "COPD",
     "a flare-up of a long-term lung disease that narrows the airways",
     "worsening SOB",
     "SOB",
     "shortness of breath",
     "arterial blood gas",
     "mild hypercapnia",
     "nebulized bronchodilators and systemic steroids",
     {"prednisone", "40 mg", "daily", "once a day"},
     "pulmonology"},
    {"Non-ST-elevation myocardial infarction",
     "NSTEMI",
     "a heart attack caused by reduced blood flow to the heart muscle",
     "substernal chest pain",
     "",
     "",
     "serial troponins",
     "a troponin peak of 2.4 ng/mL",
     "cardiac catheterization with a drug-eluting stent to the LAD",
     {"clopidogrel", "75 mg", "daily", "once a day"},
     "cardiology"},
    {"Acute decompensated heart failure",
     "ADHF",
     "the heart not pumping well enough, causing fluid to build up",
     "leg swelling and DOE",
     "DOE",
     "dyspnea on exertion",
     "transthoracic echocardiogram",
     "an ejection fraction of 30%",
     "intravenous diuresis",
     {"furosemide", "40 mg", "BID", "twice daily"},
     "cardiology"},
    {"Diabetic ketoacidosis",
     "DKA",
     "a dangerous build-up of acids in the blood from very high blood sugar",
     "nausea, vomiting and polyuria",
     "",
     "",
     "basic metabolic panel",
     "an anion gap of 24",
     "an insulin infusion with IV fluids",
     {"insulin glargine", "20 units", "qHS", "at bedtime"},
     "endocrinology"},
    {"Urinary tract infection with sepsis",
     "UTI",
     "a bladder infection that spread to the blood",
     "fever and dysuria",
     "",
     "",
     "urine culture",
     "growth of Escherichia coli",
     "intravenous ceftriaxone",
     {"cephalexin", "500 mg", "QID", "four times daily"},
     "primary care"},
    {"Acute ischemic stroke",
     "CVA",
     "a stroke caused by a blocked blood vessel in the brain",
     "sudden left-sided weakness",
     "",
     "",
     "MRI of the brain",
     "an acute right MCA territory infarct",
     "intravenous thrombolysis",
     {"atorvastatin", "80 mg", "qHS", "at bedtime"},
     "neurology"},
    {"Upper gastrointestinal bleed",
     "UGIB",
     "bleeding from the upper part of the digestive tract",
     "melena and lightheadedness",
     "",
     "",
     "esophagogastroduodenoscopy (EGD)",
     "a bleeding duodenal ulcer",
     "endoscopic clipping of the ulcer",
     {"pantoprazole", "40 mg", "BID", "twice daily"},
     "gastroenterology"},
    {"Pulmonary embolism",
     "PE",
     "a blood clot in the lungs",
     "pleuritic chest pain and SOB",
     "SOB",
     "shortness of breath",
     "CT pulmonary angiogram",
     "a segmental filling defect in the left lower lobe",
     "anticoagulation with a heparin infusion",
     {"apixaban", "5 mg", "BID", "twice daily"},
     "hematology"},
    {"Acute kidney injury",
     "AKI",
     "a sudden drop in kidney function",
     "decreased urine output",
     "",
     "",
     "renal ultrasound",
     "no hydronephrosis",
     "holding nephrotoxic medications and IV fluids",
     {"sodium bicarbonate", "650 mg", "TID", "three times daily"},
     "nephrology"},
    {"Cellulitis of the right lower extremity",
     "",
     "a skin infection of the right leg",
     "redness and swelling of the right leg",
     "",
     "",
     "venous duplex ultrasound",
     "no deep vein thrombosis",
     "intravenous cefazolin",
     {"cephalexin", "500 mg", "QID", "four times daily"},
     "primary care"},
    {"Acute pancreatitis",
     "",
     "inflammation of the pancreas",
     "epigastric pain radiating to the back",
     "",
     "",
     "serum lipase",
     "a lipase of 1,850 U/L",
     "bowel rest with aggressive IV fluids",
     {"oxycodone", "5 mg", "q6h PRN", "every 6 hours as needed"},
     "gastroenterology"},
};

struct Comorbidity {
  const char* abbrev;
  const char* name;
  Med med;
};
const Comorbidity kComorbid[] = {
    {"HTN", "hypertension", {"lisinopril", "10 mg", "daily", "once a day"}},
    {"DM2", "type 2 diabetes mellitus", {"metformin", "500 mg", "BID", "twice daily"}},
    {"HLD", "hyperlipidemia", {"simvastatin", "20 mg", "qHS", "at bedtime"}},
    {"CKD", "chronic kidney disease", {"calcitriol", "0.25 mcg", "daily", "once a day"}},
    {"AF", "atrial fibrillation", {"metoprolol succinate", "50 mg", "daily", "once a day"}},
    {"GERD", "gastroesophageal reflux disease", {"omeprazole", "20 mg", "daily", "once a day"}},
    {"OSA", "obstructive sleep apnea", {"", "", "", ""}},
    {"CAD", "coronary artery disease", {"aspirin", "81 mg", "daily", "once a day"}},
    {"BPH", "benign prostatic hyperplasia", {"tamsulosin", "0.4 mg", "qHS", "at bedtime"}},
    {"MDD", "major depressive disorder", {"sertraline", "50 mg", "daily", "once a day"}},
};

const char* kMonths[] = {"January", "February", "March",     "April",   "May",      "June",
                         "July",    "August",   "September", "October", "November", "December"};

struct Date {
  int y, m, d;  // m 1..12
};
int days_in(int y, int m) {
  static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return dm[m - 1] + (m == 2 && leap ? 1 : 0);
}
Date add_days(Date a, int n) {
  while (n-- > 0) {
    if (++a.d > days_in(a.y, a.m)) {
      a.d = 1;
      if (++a.m > 12) a.m = 1, ++a.y;
    }
  }
  return a;
}
std::string iso(Date a) {
  return fmt::format("{:04d}-{:02d}-{:02d}", a.y, a.m, a.d);
}
std::string long_date(Date a) {
  return fmt::format("{} {}, {}", kMonths[a.m - 1], a.d, a.y);
}

class Rng {
 public:
  explicit Rng(uint64_t seed) : g_(seed) {}
  int64_t uniform(int64_t lo, int64_t hi) {  // inclusive; our own mapping (portable)
    return lo + int64_t(g_() % uint64_t(hi - lo + 1));
  }
  template <class T, size_t N>
  const T& pick(const T (&a)[N]) {
    return a[uniform(0, int64_t(N) - 1)];
  }
  const std::string& pick(const std::vector<std::string>& v) {
    return v[size_t(uniform(0, int64_t(v.size()) - 1))];
  }
  bool chance(int percent) { return uniform(1, 100) <= percent; }

 private:
  std::mt19937_64 g_;
};

std::string join_list(const std::vector<std::string>& items) {
  if (items.empty()) return "";
  if (items.size() == 1) return items[0];
  std::string s;
  for (size_t i = 0; i + 1 < items.size(); ++i) s += (i ? ", " : "") + items[i];
  return s + " and " + items.back();
}

struct Patient {
  std::string id, sex, pronoun, Pronoun, possessive, noun;
  int age = 0, los = 0;
  Date admit{}, discharge{};
  const Condition* cond = nullptr;
  std::vector<const Comorbidity*> comorbid;
  std::vector<Med> meds;  // discharge medications (condition's first)
  std::string note;
  std::string course_sentence_with_pronoun;                        // for coreference
  std::vector<std::pair<std::string, std::string>> abbreviations;  // short -> long, as used
};

Patient make_patient(Rng& rng, const std::string& id) {
  Patient p;
  p.id = id;
  const bool female = rng.chance(50);
  p.sex = female ? "female" : "male";
  p.pronoun = female ? "she" : "he";
  p.Pronoun = female ? "She" : "He";
  p.possessive = female ? "her" : "his";
  p.noun = female ? "woman" : "man";
  p.age = int(rng.uniform(24, 93));
  p.los = int(rng.uniform(2, 14));
  p.admit = {int(rng.uniform(2015, 2024)), int(rng.uniform(1, 12)), 1};
  p.admit.d = int(rng.uniform(1, days_in(p.admit.y, p.admit.m)));
  p.discharge = add_days(p.admit, p.los);
  p.cond = &rng.pick(kConditions);
  std::set<size_t> chosen;
  const int64_t n = rng.uniform(1, 3);
  while (int64_t(chosen.size()) < n)
    chosen.insert(size_t(rng.uniform(0, std::size(kComorbid) - 1)));
  for (size_t i : chosen) p.comorbid.push_back(&kComorbid[i]);
  p.meds.push_back(p.cond->med);
  for (auto* c : p.comorbid)
    if (c->med.name[0] && c->med.name != std::string(p.cond->med.name)) p.meds.push_back(c->med);
  return p;
}

void write_note(Rng& rng, Patient& p) {
  const Condition& c = *p.cond;
  std::vector<std::string> pmh_items;
  for (auto* x : p.comorbid) {
    pmh_items.push_back(x->abbrev);
    p.abbreviations.emplace_back(x->abbrev, x->name);
  }
  std::string complaint = c.complaint;
  if (c.complaint_abbrev[0]) p.abbreviations.emplace_back(c.complaint_abbrev, c.complaint_long);
  if (c.abbrev[0]) p.abbreviations.emplace_back(c.abbrev, "");  // expansion = diagnosis text

  const std::string article =
      (p.age == 18 || (p.age >= 80 && p.age < 90) || p.age == 8 || p.age == 11) ? "an" : "a";
  const std::string hpi_intros[] = {
      fmt::format("The patient is {} {}-year-old {} with a history of {} who presented with {}.",
                  article, p.age, p.noun, join_list(pmh_items), complaint),
      fmt::format("{} {}-year-old {} with {} presented to the emergency department with {}.",
                  article == "an" ? "An" : "A", p.age, p.noun, join_list(pmh_items), complaint),
      fmt::format(
          "This {}-year-old {} with a past medical history significant for {} came in with {}.",
          p.age, p.noun, join_list(pmh_items), complaint)};
  const std::string durations[] = {"two days", "three days", "one week", "several hours",
                                   "24 hours"};
  const std::string hpi2 = fmt::format(
      " Symptoms began {} before admission. Vital signs on arrival: BP {}/{}, HR {}, "
      "temperature {}.{} C, SpO2 {}% on room air.",
      rng.pick(durations), rng.uniform(95, 170), rng.uniform(55, 100), rng.uniform(60, 125),
      rng.uniform(36, 39), rng.uniform(0, 9), rng.uniform(86, 99));
  p.abbreviations.emplace_back("BP", "blood pressure");
  p.abbreviations.emplace_back("HR", "heart rate");

  const std::string course_a[] = {
      fmt::format("{} was obtained and showed {}.", c.test, c.finding),
      fmt::format("Workup included {}, which revealed {}.", c.test, c.finding)};
  std::string course_b = fmt::format("{} was treated with {}.", p.Pronoun, c.procedure);
  p.course_sentence_with_pronoun = course_b;
  const std::string course_c[] = {
      fmt::format("{} symptoms improved steadily and {} was transitioned to oral {}.",
                  p.possessive == "her" ? "Her" : "His", p.pronoun, c.med.name),
      fmt::format("By hospital day {} {} clinical status had improved and {} was started.",
                  std::max(2, p.los - 1), p.possessive, c.med.name)};
  std::string course = rng.pick(course_a) + " " + course_b + " " + rng.pick(course_c);

  std::string meds;
  for (size_t i = 0; i < p.meds.size(); ++i)
    meds += fmt::format("{}. {} {} PO {}\n", i + 1, p.meds[i].name, p.meds[i].dose, p.meds[i].freq);
  p.abbreviations.emplace_back("PO", "by mouth");

  std::string dx =
      std::string(c.diagnosis) + (c.abbrev[0] ? std::string(" (") + c.abbrev + ")" : "");
  std::string secondary;
  for (auto* x : p.comorbid) secondary += fmt::format("- {} ({})\n", x->name, x->abbrev);
  const std::string conditions[] = {"stable", "good", "improved, ambulating independently"};
  p.note = fmt::format(
      "DISCHARGE SUMMARY\n\n"
      "Admission Date: {}\nDischarge Date: {}\nSex: {}  Age: {}\n\n"
      "Chief Complaint:\n{}\n\n"
      "History of Present Illness:\n{}{}\n\n"
      "Past Medical History:\n{}\n\n"
      "Hospital Course:\n{}\n\n"
      "Discharge Diagnoses:\nPrimary: {}\nSecondary:\n{}\n"
      "Discharge Medications:\n{}\n"
      "Discharge Condition: {}\n\n"
      "Follow-up:\n{} clinic in {} weeks. Return to the ED for worsening symptoms.\n",
      iso(p.admit), iso(p.discharge), p.sex == "female" ? "F" : "M", p.age, complaint,
      rng.pick(hpi_intros), hpi2, join_list(pmh_items), course, dx, secondary, meds,
      rng.pick(conditions), std::string(1, char(std::toupper(c.specialty[0]))) + (c.specialty + 1),
      rng.uniform(1, 4));
  p.abbreviations.emplace_back("ED", "emergency department");
}

SynthExample ask(Rng& rng, const Patient& p, const std::string& task) {
  const Condition& c = *p.cond;
  SynthExample e{p.id, p.note, "", "", task};
  if (task == "Named Entity Recognition") {
    const std::string qs[] = {
        "Identify all medications listed in the discharge medications section.",
        "Which medications was the patient discharged on? List their names."};
    e.question = rng.pick(qs);
    std::vector<std::string> names;
    for (const auto& m : p.meds) names.push_back(m.name);
    e.answer = join_list(names) + ".";
  } else if (task == "Abbreviation Expansion") {
    auto [s, l] = p.abbreviations[size_t(rng.uniform(0, int64_t(p.abbreviations.size()) - 1))];
    if (l.empty()) l = c.diagnosis;
    e.question =
        fmt::format("What does the abbreviation \"{}\" stand for in this discharge summary?", s);
    e.answer = fmt::format("{} stands for {}.", s, l);
  } else if (task == "Relation Extraction") {
    const Med& m = p.meds[size_t(rng.uniform(0, int64_t(p.meds.size()) - 1))];
    e.question = fmt::format("What dose and frequency of {} was prescribed at discharge?", m.name);
    e.answer = fmt::format("{} {} by mouth {}.", m.name, m.dose, m.freq_long);
  } else if (task == "Temporal Information Extraction") {
    if (rng.chance(50)) {
      e.question = "How many days was the patient hospitalized?";
      e.answer = fmt::format("The patient was hospitalized for {} days, from {} to {}.", p.los,
                             long_date(p.admit), long_date(p.discharge));
    } else {
      e.question = "On what date was the patient discharged?";
      e.answer = fmt::format("The patient was discharged on {}.", long_date(p.discharge));
    }
  } else if (task == "Coreference Resolution") {
    e.question =
        fmt::format("In the hospital course, who does \"{}\" refer to in the sentence \"{}\"?",
                    p.Pronoun, p.course_sentence_with_pronoun);
    e.answer = fmt::format("\"{}\" refers to the patient, a {}-year-old {} admitted with {}.",
                           p.Pronoun, p.age, p.noun, c.complaint);
  } else if (task == "Paraphrasing") {
    e.question =
        "Paraphrase the primary discharge diagnosis in plain language a patient would understand.";
    e.answer = fmt::format("The main diagnosis, {}, means {}.", c.diagnosis, c.plain);
  } else if (task == "Summarization") {
    e.question = "Summarize the patient's hospital course in one or two sentences.";
    e.answer = fmt::format(
        "A {}-year-old {} admitted with {} was found to have {} on {} and was treated with {}; "
        "{} was discharged after {} days on {} with {} follow-up.",
        p.age, p.noun, c.complaint, c.finding, c.test, c.procedure, p.pronoun, p.los, c.med.name,
        c.specialty);
  } else {  // Question Answering
    if (rng.chance(50)) {
      e.question = "What was the patient's chief complaint on admission?";
      e.answer = fmt::format("The patient presented with {}.", c.complaint);
    } else {
      e.question = fmt::format("What did the {} show?", c.test);
      e.answer = fmt::format("The {} showed {}.", c.test, c.finding);
    }
  }
  return e;
}

}  // namespace

const std::vector<std::string>& asclepius_task_types() {
  static const std::vector<std::string> t = {"Named Entity Recognition",
                                             "Abbreviation Expansion",
                                             "Relation Extraction",
                                             "Temporal Information Extraction",
                                             "Coreference Resolution",
                                             "Paraphrasing",
                                             "Summarization",
                                             "Question Answering"};
  return t;
}

std::vector<SynthExample> synthesize_notes(const SynthOptions& o) {
  if (o.count < 1) ASC_FAIL("synth-notes: --count must be >= 1, got {}", o.count);
  if (o.questions_per_note < 1 || o.questions_per_note > 8)
    ASC_FAIL("synth-notes: --questions-per-note must be in 1..8, got {}", o.questions_per_note);
  std::vector<SynthExample> out;
  for (int64_t i = 0; i < o.count; ++i) {
    Rng rng(o.seed * 0x9E3779B97F4A7C15ull + uint64_t(i) * 0xD1B54A32D192ED03ull + 1);
    Patient p = make_patient(rng, fmt::format("synth-{}-{}", o.seed, i));
    write_note(rng, p);
    // Distinct task types, starting at a rotating offset so every type is well represented.
    const auto& tasks = asclepius_task_types();
    for (int64_t q = 0; q < o.questions_per_note; ++q)
      out.push_back(ask(rng, p, tasks[size_t((i + q * 3) % 8)]));
  }
  return out;
}

std::string csv_quote(const std::string& f) {
  std::string s = "\"";
  for (char ch : f) s += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return s + "\"";
}

SynthSplit write_synth_splits(const std::vector<SynthExample>& ex, const std::string& dir,
                              int64_t heldout_every) {
  std::filesystem::create_directories(dir);
  std::string train = "patient_id,note,question,answer,task\n", held = train;
  SynthSplit s;
  std::map<std::string, int64_t> note_index;
  for (const auto& e : ex) note_index.emplace(e.patient_id, int64_t(note_index.size()));
  const int64_t notes = int64_t(note_index.size());
  for (const auto& e : ex) {
    // Whole notes go to one split; at least one note is held out when there are two or more.
    const int64_t i = note_index.at(e.patient_id);
    const bool h =
        heldout_every > 0 && notes > 1 &&
        (i % heldout_every == heldout_every - 1 || (notes < heldout_every && i == notes - 1));
    std::string row = csv_quote(e.patient_id) + "," + csv_quote(e.note) + "," +
                      csv_quote(e.question) + "," + csv_quote(e.answer) + "," + csv_quote(e.task) +
                      "\n";
    (h ? held : train) += row;
    ++(h ? s.heldout_rows : s.train_rows);
  }
  write_file_atomic(dir + "/train.csv", train);
  write_file_atomic(dir + "/heldout.csv", held);
  return s;
}

}  // namespace asc
