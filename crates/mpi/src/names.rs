//! Name knowledge: common English given-name nicknames and Soundex.

/// Given names and the nicknames registrars write for them (both sides normalised). A name
/// may have several; a nickname may stand for several names.
const NICKNAMES: &[(&str, &[&str])] = &[
    ("abigail", &["abby", "gail"]),
    ("albert", &["al", "bert"]),
    ("alexander", &["alex", "al", "sandy", "xander"]),
    ("alexandra", &["alex", "sandra", "sandy", "lexi"]),
    ("alfred", &["al", "alf", "fred"]),
    ("alice", &["ali", "allie"]),
    ("allison", &["ali", "allie"]),
    ("andrew", &["andy", "drew"]),
    ("angela", &["angie"]),
    ("anthony", &["tony"]),
    ("arthur", &["art", "artie"]),
    ("barbara", &["barb", "babs"]),
    ("benjamin", &["ben", "benny", "benji"]),
    ("bernard", &["bernie"]),
    ("beverly", &["bev"]),
    ("bradley", &["brad"]),
    ("bridget", &["biddy"]),
    ("calvin", &["cal"]),
    ("catherine", &["cathy", "kate", "katie", "cat"]),
    ("charles", &["charlie", "chuck", "chas"]),
    ("charlotte", &["charlie", "lottie"]),
    ("christina", &["chris", "tina", "christy"]),
    ("christine", &["chris", "tina", "christy"]),
    ("christopher", &["chris", "kit", "topher"]),
    ("cynthia", &["cindy"]),
    ("daniel", &["dan", "danny"]),
    ("david", &["dave", "davy"]),
    ("deborah", &["deb", "debbie"]),
    ("dennis", &["denny"]),
    ("donald", &["don", "donnie"]),
    ("dorothy", &["dot", "dottie", "dolly"]),
    ("douglas", &["doug"]),
    ("edward", &["ed", "eddie", "ted", "ned"]),
    ("eleanor", &["ellie", "nell", "nora"]),
    ("elizabeth", &["liz", "beth", "betty", "lizzie", "eliza", "betsy", "libby"]),
    ("emily", &["em", "emmy"]),
    ("eugene", &["gene"]),
    ("frances", &["fran", "frannie"]),
    ("francis", &["frank", "fran"]),
    ("frederick", &["fred", "freddie"]),
    ("gabriel", &["gabe"]),
    ("gerald", &["gerry", "jerry"]),
    ("gregory", &["greg"]),
    ("harold", &["harry", "hal"]),
    ("henry", &["hank", "harry", "hal"]),
    ("jacob", &["jake"]),
    ("james", &["jim", "jimmy", "jamie"]),
    ("janet", &["jan"]),
    ("jeffrey", &["jeff"]),
    ("jennifer", &["jen", "jenny"]),
    ("jessica", &["jess", "jessie"]),
    ("john", &["jack", "johnny"]),
    ("jonathan", &["jon", "johnny"]),
    ("joseph", &["joe", "joey"]),
    ("joshua", &["josh"]),
    ("judith", &["judy"]),
    ("katherine", &["kathy", "kate", "katie", "kay"]),
    ("kathleen", &["kathy", "kate"]),
    ("kenneth", &["ken", "kenny"]),
    ("kimberly", &["kim"]),
    ("lawrence", &["larry"]),
    ("leonard", &["leo", "len", "lenny"]),
    ("margaret", &["maggie", "meg", "peggy", "marge", "madge", "greta"]),
    ("matthew", &["matt"]),
    ("melissa", &["missy", "mel"]),
    ("michael", &["mike", "mikey", "mick"]),
    ("nathaniel", &["nate", "nat"]),
    ("nicholas", &["nick", "nicky"]),
    ("pamela", &["pam"]),
    ("patricia", &["pat", "patty", "trish", "tricia"]),
    ("patrick", &["pat", "paddy"]),
    ("peter", &["pete"]),
    ("philip", &["phil"]),
    ("rebecca", &["becky", "becca"]),
    ("richard", &["rick", "rich", "dick", "ricky"]),
    ("robert", &["rob", "bob", "bobby", "robbie", "bert"]),
    ("ronald", &["ron", "ronnie"]),
    ("samantha", &["sam", "sammy"]),
    ("samuel", &["sam", "sammy"]),
    ("sandra", &["sandy"]),
    ("stephanie", &["steph"]),
    ("stephen", &["steve"]),
    ("steven", &["steve"]),
    ("susan", &["sue", "susie"]),
    ("theodore", &["ted", "teddy", "theo"]),
    ("thomas", &["tom", "tommy"]),
    ("timothy", &["tim", "timmy"]),
    ("victoria", &["vicky", "tori"]),
    ("vincent", &["vince", "vinny"]),
    ("virginia", &["ginny", "ginger"]),
    ("walter", &["walt"]),
    ("william", &["will", "bill", "billy", "willy", "liam"]),
    ("zachary", &["zach", "zack"]),
];

/// Each name of the table with the entries (bit `i` for entry `i`) it belongs to, formal or
/// nickname; built once.
fn groups() -> &'static std::collections::HashMap<&'static str, u128> {
    static GROUPS: std::sync::OnceLock<std::collections::HashMap<&'static str, u128>> =
        std::sync::OnceLock::new();
    GROUPS.get_or_init(|| {
        let mut groups: std::collections::HashMap<&'static str, u128> = std::collections::HashMap::new();
        for (entry, (name, nicks)) in NICKNAMES.iter().enumerate() {
            for member in std::iter::once(name).chain(nicks.iter()) {
                *groups.entry(member).or_default() |= 1u128 << entry;
            }
        }
        groups
    })
}

/// Whether one given name is a nickname of the other (either way round), or both are
/// nicknames of one name.
pub fn nickname_of(a: &str, b: &str) -> bool {
    if a.is_empty() || b.is_empty() || a == b {
        return false;
    }
    let groups = groups();
    match (groups.get(a), groups.get(b)) {
        (Some(x), Some(y)) => x & y != 0,
        _ => false,
    }
}

/// The formal name a nickname stands for when there is exactly one (for blocking), else the
/// name itself.
pub fn formal(name: &str) -> &str {
    let mut found = NICKNAMES.iter().filter(|(_, nicks)| nicks.contains(&name)).map(|(formal, _)| *formal);
    match (found.next(), found.next()) {
        (Some(one), None) => one,
        _ => name,
    }
}

/// American Soundex (`robert` → `r163`); empty for a name without letters.
pub fn soundex(name: &str) -> String {
    let code = |c: u8| match c {
        b'b' | b'f' | b'p' | b'v' => b'1',
        b'c' | b'g' | b'j' | b'k' | b'q' | b's' | b'x' | b'z' => b'2',
        b'd' | b't' => b'3',
        b'l' => b'4',
        b'm' | b'n' => b'5',
        b'r' => b'6',
        b'h' | b'w' => b'h',
        _ => b'0',
    };
    let letters: Vec<u8> = name.bytes().filter(u8::is_ascii_lowercase).collect();
    let Some(&first) = letters.first() else { return String::new() };
    let mut out = vec![first];
    let mut last = code(first);
    for &c in &letters[1..] {
        let digit = code(c);
        // h and w do not separate letters of the same code; vowels do.
        if digit == b'h' {
            continue;
        }
        if digit != b'0' && digit != last {
            out.push(digit);
            if out.len() == 4 {
                break;
            }
        }
        last = digit;
    }
    while out.len() < 4 {
        out.push(b'0');
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soundex_follows_the_american_rules() {
        for (name, code) in [
            ("robert", "r163"),
            ("rupert", "r163"),
            ("ashcraft", "a261"),
            ("tymczak", "t522"),
            ("pfister", "p236"),
            ("lee", "l000"),
            ("", ""),
        ] {
            assert_eq!(soundex(name), code, "{name}");
        }
    }

    #[test]
    fn nicknames_go_both_ways() {
        assert!(
            nickname_of("william", "bill") && nickname_of("bill", "william") && nickname_of("bill", "liam")
        );
        assert!(!nickname_of("william", "robert") && !nickname_of("bill", "bill"));
        assert_eq!(formal("bob"), "robert");
        assert_eq!(formal("pat"), "pat");
    }
}
