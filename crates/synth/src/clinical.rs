//! The clinical vocabulary: diagnoses with their ICD-10-CM (FY2026, billable) and SNOMED CT
//! codes and the words clinicians write for them, the chronic diseases with their prevalence,
//! and the acute problems that bring people in.

/// A diagnosis as coded and as written in notes.
pub struct Dx {
    pub icd: &'static str,
    /// The ICD-10-CM title, exactly as in the tabular list.
    pub display: &'static str,
    pub snomed: Option<(&'static str, &'static str)>,
    /// How a clinician writes it; the first is the formal phrase.
    pub words: &'static [&'static str],
    /// Plan phrases for the assessment.
    pub plan: &'static [&'static str],
}

macro_rules! dx {
    ($name:ident, $icd:expr, $display:expr, $snomed:expr, [$($word:expr),+], [$($plan:expr),+]) => {
        pub const $name: Dx = Dx { icd: $icd, display: $display, snomed: $snomed, words: &[$($word),+], plan: &[$($plan),+] };
    };
}

dx!(
    T2DM,
    "E11.9",
    "Type 2 diabetes mellitus without complications",
    Some(("44054006", "Diabetes mellitus type 2")),
    [
        "Type 2 diabetes mellitus without complications",
        "T2DM",
        "type 2 diabetes",
        "diabetes mellitus type II",
        "DM2"
    ],
    [
        "continue metformin",
        "HbA1c today, diet and exercise reviewed",
        "continue current regimen, annual eye exam due"
    ]
);
dx!(
    T2DM_CKD,
    "E11.22",
    "Type 2 diabetes mellitus with diabetic chronic kidney disease",
    None,
    ["Type 2 diabetes mellitus with diabetic chronic kidney disease", "T2DM with CKD", "diabetic CKD"],
    ["continue metformin at renal dose, monitor eGFR", "HbA1c and BMP today"]
);
dx!(
    CKD3,
    "N18.30",
    "Chronic kidney disease, stage 3 unspecified",
    Some(("433144002", "Chronic kidney disease stage 3")),
    ["chronic kidney disease stage 3", "CKD 3", "CKD stage III"],
    ["avoid NSAIDs, recheck creatinine in 3 months", "renal function stable, continue ACE inhibitor"]
);
dx!(
    CKD3A,
    "N18.31",
    "Chronic kidney disease, stage 3a",
    None,
    ["chronic kidney disease stage 3a", "CKD 3a"],
    ["avoid nephrotoxins, recheck creatinine in 3 months"]
);
dx!(
    CKD3B,
    "N18.32",
    "Chronic kidney disease, stage 3b",
    None,
    ["chronic kidney disease stage 3b", "CKD 3b"],
    ["nephrology referral, recheck BMP in 6 weeks"]
);
dx!(
    HTN,
    "I10",
    "Essential (primary) hypertension",
    Some(("59621000", "Essential hypertension")),
    ["Essential hypertension", "HTN", "high blood pressure", "hypertension"],
    [
        "well controlled, continue lisinopril",
        "home BP log reviewed, continue current dose",
        "low-sodium diet encouraged"
    ]
);
dx!(
    HTN_CKD,
    "I12.9",
    "Hypertensive chronic kidney disease with stage 1 through stage 4 chronic kidney disease, or unspecified chronic kidney disease",
    None,
    ["hypertensive chronic kidney disease", "HTN with CKD"],
    ["continue ACE inhibitor, BP goal under 130/80"]
);
dx!(
    HTN_HF,
    "I11.0",
    "Hypertensive heart disease with heart failure",
    None,
    ["hypertensive heart disease with heart failure", "hypertensive heart disease with CHF"],
    ["continue lisinopril and beta blocker"]
);
dx!(
    HTN_HF_CKD,
    "I13.0",
    "Hypertensive heart and chronic kidney disease with heart failure and stage 1 through stage 4 chronic kidney disease, or unspecified chronic kidney disease",
    None,
    ["hypertensive heart and chronic kidney disease with heart failure"],
    ["BP and volume status reviewed, continue current regimen"]
);
dx!(
    HF,
    "I50.22",
    "Chronic systolic (congestive) heart failure",
    None,
    ["chronic systolic heart failure", "chronic HFrEF", "chronic systolic CHF"],
    ["euvolemic today, continue diuretic, daily weights", "sodium and fluid restriction reviewed"]
);
dx!(
    HF_EXACERBATION,
    "I50.23",
    "Acute on chronic systolic (congestive) heart failure",
    None,
    ["acute on chronic systolic heart failure", "acute on chronic HFrEF", "acute on chronic systolic CHF"],
    ["IV furosemide, strict intake and output, daily weights"]
);
dx!(
    COPD,
    "J44.9",
    "Chronic obstructive pulmonary disease, unspecified",
    Some(("13645005", "Chronic obstructive lung disease")),
    ["Chronic obstructive pulmonary disease", "COPD", "chronic obstructive lung disease"],
    ["continue inhalers, smoking cessation counseled", "stable, pulmonary rehab discussed"]
);
dx!(
    COPD_EXACERBATION,
    "J44.1",
    "Chronic obstructive pulmonary disease with (acute) exacerbation",
    None,
    ["COPD with acute exacerbation", "AECOPD", "COPD exacerbation"],
    [
        "nebulized bronchodilators, prednisone 40 mg daily for 5 days",
        "supplemental oxygen to keep saturation 88 to 92 percent"
    ]
);
dx!(
    ASTHMA,
    "J45.909",
    "Unspecified asthma, uncomplicated",
    Some(("195967001", "Asthma")),
    ["Asthma, uncomplicated", "asthma", "reactive airway disease"],
    ["albuterol as needed, asthma action plan reviewed", "well controlled, continue current inhalers"]
);
dx!(
    ASTHMA_EXACERBATION,
    "J45.901",
    "Unspecified asthma with (acute) exacerbation",
    None,
    ["asthma exacerbation", "acute asthma attack"],
    ["albuterol nebulizer, oral steroids for 5 days"]
);
dx!(
    DEPRESSION,
    "F32.A",
    "Depression, unspecified",
    Some(("35489007", "Depressive disorder")),
    ["depression", "depressive disorder", "depression NOS"],
    ["PHQ-9 reviewed, referral to behavioral health", "continue counseling, safety plan discussed"]
);
dx!(
    MDD_RECURRENT,
    "F33.1",
    "Major depressive disorder, recurrent, moderate",
    None,
    ["major depressive disorder, recurrent, moderate", "recurrent MDD, moderate", "MDD, recurrent, moderate"],
    ["continue SSRI and therapy, follow up in 6 weeks"]
);
dx!(
    ANXIETY,
    "F41.1",
    "Generalized anxiety disorder",
    Some(("21897009", "Generalized anxiety disorder")),
    ["generalized anxiety disorder", "GAD", "generalized anxiety"],
    ["CBT referral, sleep hygiene discussed"]
);
dx!(
    HYPERLIPIDEMIA,
    "E78.5",
    "Hyperlipidemia, unspecified",
    Some(("55822004", "Hyperlipidemia")),
    ["hyperlipidemia", "dyslipidemia", "HLD"],
    ["continue atorvastatin, lipid panel today", "statin tolerated, recheck lipids in a year"]
);
dx!(
    OBESITY,
    "E66.9",
    "Obesity, unspecified",
    Some(("414916001", "Obesity")),
    ["obesity", "obese"],
    ["weight loss counseling, nutrition referral", "exercise goals reviewed"]
);
dx!(
    CAD,
    "I25.10",
    "Atherosclerotic heart disease of native coronary artery without angina pectoris",
    Some(("53741008", "Coronary arteriosclerosis")),
    ["coronary artery disease", "CAD", "atherosclerotic heart disease"],
    ["continue aspirin and statin", "no angina, continue medical management"]
);
dx!(
    AFIB,
    "I48.91",
    "Unspecified atrial fibrillation",
    Some(("49436004", "Atrial fibrillation")),
    ["atrial fibrillation", "AF", "afib"],
    ["rate controlled, continue anticoagulation", "CHA2DS2-VASc reviewed, continue apixaban"]
);
dx!(
    GERD,
    "K21.9",
    "Gastro-esophageal reflux disease without esophagitis",
    Some(("235595009", "Gastroesophageal reflux disease")),
    ["gastroesophageal reflux disease", "GERD", "acid reflux"],
    ["continue omeprazole, avoid late meals"]
);
dx!(
    OSA,
    "G47.33",
    "Obstructive sleep apnea (adult) (pediatric)",
    Some(("78275009", "Obstructive sleep apnea syndrome")),
    ["obstructive sleep apnea", "OSA"],
    ["CPAP compliance reviewed, continue nightly CPAP"]
);
dx!(
    KNEE_OA,
    "M17.11",
    "Unilateral primary osteoarthritis, right knee",
    Some(("239873007", "Osteoarthritis of knee")),
    [
        "primary osteoarthritis of the right knee",
        "right knee OA",
        "degenerative joint disease of the right knee"
    ],
    ["acetaminophen as needed, physical therapy", "knee injection discussed"]
);
dx!(
    BREAST_CANCER,
    "C50.911",
    "Malignant neoplasm of unspecified site of right female breast",
    Some(("254837009", "Malignant neoplasm of breast")),
    ["malignant neoplasm of the right breast", "right breast cancer", "carcinoma of the right breast"],
    ["followed by oncology, continue letrozole"]
);
dx!(
    PROSTATE_CANCER,
    "C61",
    "Malignant neoplasm of prostate",
    Some(("399068003", "Malignant tumor of prostate")),
    ["malignant neoplasm of prostate", "prostate cancer", "prostate adenocarcinoma"],
    ["PSA surveillance per urology"]
);
dx!(
    LUNG_CANCER,
    "C34.90",
    "Malignant neoplasm of unspecified part of unspecified bronchus or lung",
    None,
    ["malignant neoplasm of the lung", "lung cancer", "NSCLC"],
    ["followed by oncology, next CT chest in 3 months"]
);
dx!(
    HIP_FRACTURE,
    "S72.001A",
    "Fracture of unspecified part of neck of right femur, initial encounter for closed fracture",
    None,
    ["closed fracture of the right femoral neck", "right hip fracture", "fractured right hip"],
    ["orthopedics consulted, right hip arthroplasty, DVT prophylaxis, PT evaluation"]
);
dx!(
    RADIUS_FRACTURE,
    "S52.501A",
    "Unspecified fracture of the lower end of right radius, initial encounter for closed fracture",
    None,
    [
        "closed fracture of the distal right radius",
        "closed right distal radius fracture",
        "right distal radius fracture, closed"
    ],
    ["closed reduction and splint, orthopedics follow-up in one week"]
);
dx!(
    INFLUENZA,
    "J10.1",
    "Influenza due to other identified influenza virus with other respiratory manifestations",
    Some(("6142004", "Influenza")),
    ["influenza A", "influenza B", "influenza A virus infection"],
    ["oseltamivir for 5 days, fluids and rest", "supportive care, return if short of breath"]
);
dx!(
    GASTROENTERITIS,
    "A08.4",
    "Viral intestinal infection, unspecified",
    None,
    ["viral gastroenteritis", "viral enteritis", "viral intestinal infection"],
    ["oral rehydration, ondansetron as needed", "bland diet, return if unable to keep fluids down"]
);
dx!(
    PNEUMONIA,
    "J18.9",
    "Pneumonia, unspecified organism",
    Some(("233604007", "Pneumonia")),
    ["community-acquired pneumonia", "pneumonia", "CAP"],
    ["ceftriaxone and azithromycin, chest X-ray in 6 weeks", "antibiotics, incentive spirometry"]
);
dx!(
    UTI,
    "N39.0",
    "Urinary tract infection, site not specified",
    Some(("68566005", "Urinary tract infectious disease")),
    ["urinary tract infection", "UTI", "urinary infection"],
    ["nitrofurantoin for 5 days, urine culture sent", "increase fluids, culture pending"]
);
dx!(
    URI,
    "J06.9",
    "Acute upper respiratory infection, unspecified",
    Some(("54150009", "Upper respiratory infection")),
    ["upper respiratory infection", "URI", "viral URI", "upper respiratory tract infection"],
    ["supportive care, no antibiotics indicated", "saline rinses, honey for cough"]
);
dx!(
    CHEST_PAIN,
    "R07.9",
    "Chest pain, unspecified",
    Some(("29857009", "Chest pain")),
    ["chest pain", "chest pain, unspecified", "chest pain of unclear cause"],
    ["troponins negative x2, ECG without ischemic changes, outpatient stress test"]
);
dx!(
    BACK_PAIN,
    "M54.50",
    "Low back pain, unspecified",
    Some(("279039007", "Low back pain")),
    ["low back pain", "LBP", "lumbago"],
    ["NSAIDs, heat, stay active, PT if not improved"]
);

/// Every diagnosis the generator can write, for checking the tables.
pub const ALL: &[&Dx] = &[
    &T2DM,
    &T2DM_CKD,
    &CKD3,
    &CKD3A,
    &CKD3B,
    &HTN,
    &HTN_CKD,
    &HTN_HF,
    &HTN_HF_CKD,
    &HF,
    &HF_EXACERBATION,
    &COPD,
    &COPD_EXACERBATION,
    &ASTHMA,
    &ASTHMA_EXACERBATION,
    &DEPRESSION,
    &MDD_RECURRENT,
    &ANXIETY,
    &HYPERLIPIDEMIA,
    &OBESITY,
    &CAD,
    &AFIB,
    &GERD,
    &OSA,
    &KNEE_OA,
    &BREAST_CANCER,
    &PROSTATE_CANCER,
    &LUNG_CANCER,
    &HIP_FRACTURE,
    &RADIUS_FRACTURE,
    &INFLUENZA,
    &GASTROENTERITIS,
    &PNEUMONIA,
    &UTI,
    &URI,
    &CHEST_PAIN,
    &BACK_PAIN,
];

/// The chronic diseases a person can have; the coded problem list is derived from them
/// (hypertension with kidney disease is I12.9, not I10 beside N18.3x).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Disease {
    Hypertension,
    Diabetes,
    Hyperlipidemia,
    Obesity,
    ChronicKidney,
    Copd,
    HeartFailure,
    CoronaryArtery,
    AtrialFibrillation,
    Asthma,
    Depression,
    Anxiety,
    Reflux,
    SleepApnea,
    KneeArthritis,
    BreastCancer,
    ProstateCancer,
    LungCancer,
}

/// Yearly probability-like prevalence of `disease` for a person of `age` (years).
pub fn prevalence(disease: Disease, age: i64, female: bool, has: &dyn Fn(Disease) -> bool) -> f64 {
    let band = |child: f64, young: f64, middle: f64, old: f64| match age {
        0..=17 => child,
        18..=39 => young,
        40..=59 => middle,
        _ => old,
    };
    match disease {
        Disease::Hypertension => band(0.005, 0.08, 0.33, 0.6),
        Disease::Diabetes => band(0.002, 0.03, 0.13, 0.22) * if has(Disease::Obesity) { 2.0 } else { 1.0 },
        Disease::Hyperlipidemia => band(0.0, 0.06, 0.25, 0.4),
        // Decided from the person's BMI instead.
        Disease::Obesity => 0.0,
        Disease::ChronicKidney => {
            band(0.0, 0.005, 0.03, 0.1) + if has(Disease::Diabetes) { 0.12 } else { 0.0 }
        }
        Disease::Copd => band(0.0, 0.003, 0.04, 0.1),
        Disease::HeartFailure => {
            band(0.0, 0.002, 0.01, 0.05) * if has(Disease::Hypertension) { 2.0 } else { 1.0 }
        }
        Disease::CoronaryArtery => band(0.0, 0.003, 0.05, 0.14) * if female { 0.7 } else { 1.0 },
        Disease::AtrialFibrillation => band(0.0, 0.002, 0.01, if age >= 70 { 0.1 } else { 0.04 }),
        Disease::Asthma => band(0.08, 0.08, 0.07, 0.06),
        Disease::Depression => band(0.02, 0.09, 0.08, 0.06) * if female { 1.4 } else { 0.8 },
        Disease::Anxiety => band(0.02, 0.08, 0.07, 0.05) * if female { 1.3 } else { 0.8 },
        Disease::Reflux => band(0.01, 0.06, 0.1, 0.12),
        Disease::SleepApnea => band(0.0, 0.02, 0.05, 0.06) * if has(Disease::Obesity) { 2.5 } else { 1.0 },
        Disease::KneeArthritis => band(0.0, 0.005, 0.06, 0.15),
        Disease::BreastCancer => {
            if female {
                band(0.0, 0.002, 0.015, 0.035)
            } else {
                0.0
            }
        }
        Disease::ProstateCancer => {
            if female {
                0.0
            } else {
                band(0.0, 0.0, 0.01, 0.05)
            }
        }
        Disease::LungCancer => band(0.0, 0.0, 0.003, 0.01) * if has(Disease::Copd) { 3.0 } else { 1.0 },
    }
}

/// In decision order: later ones may depend on earlier ones.
pub const DISEASES: &[Disease] = &[
    Disease::Obesity,
    Disease::Hypertension,
    Disease::Diabetes,
    Disease::Hyperlipidemia,
    Disease::ChronicKidney,
    Disease::Copd,
    Disease::HeartFailure,
    Disease::CoronaryArtery,
    Disease::AtrialFibrillation,
    Disease::Asthma,
    Disease::Depression,
    Disease::Anxiety,
    Disease::Reflux,
    Disease::SleepApnea,
    Disease::KneeArthritis,
    Disease::BreastCancer,
    Disease::ProstateCancer,
    Disease::LungCancer,
];

/// Youngest age at which the disease starts.
pub fn earliest_onset_age(disease: Disease) -> i64 {
    match disease {
        Disease::Asthma => 2,
        Disease::Depression | Disease::Anxiety | Disease::Reflux => 10,
        Disease::Obesity | Disease::Hypertension | Disease::Diabetes => 12,
        Disease::Hyperlipidemia | Disease::SleepApnea | Disease::ChronicKidney => 20,
        Disease::Copd | Disease::HeartFailure | Disease::CoronaryArtery | Disease::AtrialFibrillation => 35,
        Disease::KneeArthritis | Disease::BreastCancer | Disease::ProstateCancer | Disease::LungCancer => 35,
    }
}

/// A medication as ordered: RxNorm code and display.
pub struct Drug {
    pub rxnorm: &'static str,
    pub display: &'static str,
    pub dosage: &'static str,
}

pub const METFORMIN: Drug = Drug {
    rxnorm: "860975",
    display: "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet",
    dosage: "Take 1 tablet by mouth once daily with the evening meal",
};
pub const LISINOPRIL: Drug = Drug {
    rxnorm: "314076",
    display: "lisinopril 10 MG Oral Tablet",
    dosage: "Take 1 tablet by mouth once daily",
};
pub const ATORVASTATIN: Drug = Drug {
    rxnorm: "617312",
    display: "atorvastatin 10 MG Oral Tablet",
    dosage: "Take 1 tablet by mouth at bedtime",
};
pub const ALBUTEROL: Drug = Drug {
    rxnorm: "745679",
    display: "200 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler",
    dosage: "Inhale 2 puffs every 4 to 6 hours as needed for wheezing",
};

pub fn drug_for(disease: Disease) -> Option<&'static Drug> {
    match disease {
        Disease::Diabetes => Some(&METFORMIN),
        Disease::Hypertension => Some(&LISINOPRIL),
        Disease::Hyperlipidemia | Disease::CoronaryArtery => Some(&ATORVASTATIN),
        Disease::Asthma | Disease::Copd => Some(&ALBUTEROL),
        _ => None,
    }
}

/// Why someone comes in with an acute problem, and what the note says about it.
pub struct Presentation {
    pub dx: &'static Dx,
    pub complaint: &'static str,
    pub history: &'static str,
    pub denies: &'static [&'static str],
    /// Chronic diagnosis codes this one stands in for during the encounter (an exacerbation
    /// replaces the stable code).
    pub replaces: &'static [&'static str],
}

pub const FLU: Presentation = Presentation {
    dx: &INFLUENZA,
    complaint: "fever, body aches and cough",
    history: "reports abrupt onset of fever to 102 F, myalgias and dry cough for 2 days; rapid influenza test positive",
    denies: &["Denies shortness of breath.", "Denies chest pain.", "No neck stiffness."],
    replaces: &[],
};
pub const STOMACH: Presentation = Presentation {
    dx: &GASTROENTERITIS,
    complaint: "vomiting and diarrhea",
    history: "reports nausea, several episodes of vomiting and watery diarrhea since yesterday; sick contacts at home",
    denies: &["Denies blood in stool.", "No fever.", "Denies abdominal pain radiating to the back."],
    replaces: &[],
};
pub const BLADDER: Presentation = Presentation {
    dx: &UTI,
    complaint: "burning with urination",
    history: "reports dysuria, urgency and frequency for 3 days; urinalysis positive for nitrites and leukocyte esterase",
    denies: &["Denies flank pain.", "No fever or chills.", "Denies vaginal discharge."],
    replaces: &[],
};
pub const COLD: Presentation = Presentation {
    dx: &URI,
    complaint: "sore throat and congestion",
    history: "reports nasal congestion, rhinorrhea and mild sore throat for 4 days",
    denies: &["Denies fever.", "Denies shortness of breath.", "No ear pain."],
    replaces: &[],
};
pub const BACK: Presentation = Presentation {
    dx: &BACK_PAIN,
    complaint: "low back pain",
    history: "reports low back pain after lifting boxes 5 days ago, worse with bending",
    denies: &["Denies leg weakness or numbness.", "Denies bowel or bladder incontinence.", "No fever."],
    replaces: &[],
};
pub const CHEST: Presentation = Presentation {
    dx: &CHEST_PAIN,
    complaint: "chest pain",
    history: "reports intermittent left-sided chest pressure for several hours, not related to exertion",
    denies: &["Denies radiation to the arm or jaw.", "Denies diaphoresis.", "No shortness of breath."],
    replaces: &[],
};
pub const WRIST: Presentation = Presentation {
    dx: &RADIUS_FRACTURE,
    complaint: "right wrist pain after a fall",
    history: "fell on an outstretched right hand; X-ray shows a distal radius fracture",
    denies: &["Denies head strike.", "Denies loss of consciousness.", "No numbness in the fingers."],
    replaces: &[],
};
pub const LUNG_INFECTION: Presentation = Presentation {
    dx: &PNEUMONIA,
    complaint: "cough, fever and shortness of breath",
    history: "reports productive cough and fever for 4 days; chest X-ray shows a right lower lobe infiltrate",
    denies: &["Denies hemoptysis.", "Denies chest pain.", "No recent travel."],
    replaces: &[],
};
pub const HIP: Presentation = Presentation {
    dx: &HIP_FRACTURE,
    complaint: "right hip pain after a fall",
    history: "fell at home and could not bear weight; right leg shortened and externally rotated; X-ray confirms a femoral neck fracture",
    denies: &["Denies head strike.", "Denies loss of consciousness.", "Denies chest pain before the fall."],
    replaces: &[],
};
pub const COPD_FLARE: Presentation = Presentation {
    dx: &COPD_EXACERBATION,
    complaint: "worsening shortness of breath",
    history: "reports increased dyspnea, wheezing and sputum production for 3 days despite inhalers",
    denies: &["Denies chest pain.", "Denies fever.", "No leg swelling."],
    replaces: &["J44.9"],
};
pub const HF_FLARE: Presentation = Presentation {
    dx: &HF_EXACERBATION,
    complaint: "shortness of breath and leg swelling",
    history: "reports orthopnea, 4 kg weight gain and worsening leg edema over a week",
    denies: &["Denies chest pain.", "Denies fever.", "No syncope."],
    replaces: &["I50.22"],
};
pub const ASTHMA_FLARE: Presentation = Presentation {
    dx: &ASTHMA_EXACERBATION,
    complaint: "wheezing",
    history: "reports wheezing and chest tightness since a cold started 2 days ago, using albuterol every 2 hours",
    denies: &["Denies fever.", "Denies chest pain.", "No cyanosis."],
    replaces: &["J45.909"],
};
