//! Retrieval quality with the local embedder (all-MiniLM-L6-v2, in-process): on a corpus of 210
//! short catalogue passages built here, with 120 labelled queries, hybrid search's recall@5 beats
//! both keyword-only and vector-only search, on SQLite and PostgreSQL. The figures, overall and by
//! kind of query, are written to the test output.
//!
//! The corpus is sixty products, each a passage naming its code and saying what it is, among 150
//! catalogue distractors whose codes are near-identical (`KV7310` is a product, `KV7331` a
//! distractor) and whose wording is one of a few templates. Each product is asked for twice:
//!
//! - by **paraphrase**: what it does, in other words ("Which jug stops my morning brew going cold
//!   all day?" for a carafe that "keeps coffee hot"). No word of these queries occurs in the
//!   corpus, so keyword search finds nothing, while the embeddings match the meaning;
//! - by **identifier**: its code and a word the corpus never uses ("KV7310 warranty"). Full text
//!   matches the exact code token and nothing else, while to the embedder the codes of a family
//!   are nearly the same, so the right passage drowns among its look-alikes.
//!
//! Reciprocal-rank fusion gets both: a paraphrase's keyword list is empty, so hybrid ranks as
//! vector search does; an identifier's keyword list holds just its passage, whose fused score is
//! then at least that of the best vector-only hit.

use std::collections::BTreeMap;
use std::io::Write;

use agentd_models::{ProviderConfig, ProviderKind};
use agentd_runtime::Config;
use agentd_testkit::{backend_tests, spawn_app_with, TestApp, TestDb};
use futures::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};

use crate::knowledge::completed;

backend_tests!(hybrid_search_recalls_more_than_keyword_or_vector_alone);

/// The embedder: all-MiniLM-L6-v2 run by a `local` provider.
const EMBEDDER: &str = "local/all-minilm-l6-v2";

/// How many results count: recall@5.
const TOP: usize = 5;

/// The products: code, what it is (the passage reads "The {code} is {what}."), and a paraphrase
/// asking for it without any word of the corpus. Families of ten share a code prefix.
const PRODUCTS: [(&str, &str, &str); 60] = [
    // Kitchen.
    (
        "KV7310",
        "a double-walled carafe that keeps coffee hot for twelve hours",
        "Which jug stops my morning brew going cold all day?",
    ),
    (
        "KV7311",
        "a countertop mill that grinds peppercorns and dried spices into fine powder",
        "gadget pulverising seasoning seeds",
    ),
    (
        "KV7312",
        "a kettle that boils water in ninety seconds",
        "quickest way getting tea liquid bubbling",
    ),
    (
        "KV7313",
        "a rice cooker that switches itself off once the grains are soft",
        "steams fluffy pilaf then powers down unaided",
    ),
    (
        "KV7314",
        "a blender that crushes ice and frozen fruit into smoothies",
        "gizmo whizzing berries plus frosty cubes until slushy",
    ),
    (
        "KV7315",
        "a toaster with wide slots for bagels and thick bread",
        "browning gadget roomy enough holding chunky loaf pieces",
    ),
    (
        "KV7316",
        "a fridge thermometer that warns when the milk compartment warms up",
        "beeper telling me my dairy cooler got too tepid",
    ),
    (
        "KV7317",
        "a scale that weighs flour and sugar to the nearest gram",
        "precise baking balance measuring ingredient mass",
    ),
    (
        "KV7318",
        "a dispenser that doses dishwasher detergent automatically",
        "device releasing soap portions unaided so plates get washed",
    ),
    (
        "KV7319",
        "a timer that rings when the pasta is ready",
        "clock beeping whenever spaghetti finishes",
    ),
    // Garden.
    (
        "GD4520",
        "a hose nozzle with seven spray patterns",
        "garden wand offering several jet shapes",
    ),
    (
        "GD4521",
        "a robotic mower that cuts the lawn on a schedule",
        "grass trimming droid obeying timetable",
    ),
    (
        "GD4522",
        "a compost bin that turns food scraps into soil",
        "container converting leftover peels back toward fertile earth",
    ),
    (
        "GD4523",
        "a rain gauge that records how much water fell overnight",
        "measuring precipitation following storms",
    ),
    (
        "GD4524",
        "a bird feeder with a squirrel-proof cage",
        "seed station deterring rodents so finches dine undisturbed",
    ),
    (
        "GD4525",
        "a pair of pruning shears for branches up to two centimetres thick",
        "clippers trimming shrub twigs",
    ),
    (
        "GD4526",
        "a solar lamp that lights the path after dusk",
        "sun-powered illumination along walkways past sunset",
    ),
    (
        "GD4527",
        "a greenhouse heater that protects seedlings from frost",
        "glasshouse radiator so young sprouts survive icy weather",
    ),
    (
        "GD4528",
        "a soil probe that reports moisture and acidity",
        "sensor checking dampness plus pH inside earth",
    ),
    (
        "GD4529",
        "a wheelbarrow with a puncture-free tyre",
        "cart whose wheel never deflates",
    ),
    // Home and workshop.
    (
        "HT6130",
        "a cordless drill with two batteries",
        "wireless screwdriver power tool plus spare packs",
    ),
    (
        "HT6131",
        "a stud finder that locates beams behind plaster",
        "detect wooden joists hidden inside partitions",
    ),
    (
        "HT6132",
        "a smoke alarm that sends alerts to a phone",
        "fire detector notifying my mobile",
    ),
    (
        "HT6133",
        "a dehumidifier that dries out musty cellars",
        "appliance removing humidity underground",
    ),
    (
        "HT6134",
        "a laser level that projects a straight line across a room",
        "gadget helping mount pictures perfectly horizontal",
    ),
    (
        "HT6135",
        "a robot vacuum that cleans carpets while nobody is around",
        "autonomous hoover doing rugs whilst house stays empty",
    ),
    (
        "HT6136",
        "a doorbell camera that shows visitors on a tablet",
        "see who's knocking outside my front entrance via video",
    ),
    (
        "HT6137",
        "a thermostat that learns the household routine and lowers heating at night",
        "intelligent climate control mirroring family habits",
    ),
    (
        "HT6138",
        "a ladder that folds flat for storage",
        "collapsible steps easily stowed",
    ),
    (
        "HT6139",
        "a paint sprayer that coats a fence quickly",
        "aerosol gun covering garden boundaries",
    ),
    // Travel and outdoors.
    (
        "TR2840",
        "a tent that sleeps four and pitches in two minutes",
        "family shelter erected fast whilst camping",
    ),
    (
        "TR2841",
        "a backpack with a padded laptop sleeve",
        "rucksack shielding my notebook computer",
    ),
    (
        "TR2842",
        "a filter that makes stream water safe to drink",
        "purifier letting hikers sip creeks without illness",
    ),
    (
        "TR2843",
        "a sleeping bag rated for minus ten degrees",
        "cosy sack during freezing winter camping",
    ),
    (
        "TR2844",
        "a headlamp with a red night mode",
        "forehead-mounted torch",
    ),
    (
        "TR2845",
        "a luggage scale that hangs from the suitcase handle",
        "checking baggage heaviness before flying",
    ),
    (
        "TR2846",
        "a travel adapter that fits sockets in over one hundred countries",
        "plug converter abroad",
    ),
    (
        "TR2847",
        "a neck pillow that supports the head on long flights",
        "cushion letting me nap upright aboard planes",
    ),
    (
        "TR2848",
        "a compass with a glow-in-the-dark dial",
        "navigation tool readable past midnight",
    ),
    (
        "TR2849",
        "a dry bag that keeps phones safe when kayaking",
        "waterproof pouch during canoe trips",
    ),
    // Office and study.
    (
        "OF5270",
        "a standing desk that rises at the push of a button",
        "motorised height-changing workstation",
    ),
    (
        "OF5271",
        "a shredder that destroys old bank statements",
        "gadget slicing confidential paperwork",
    ),
    (
        "OF5272",
        "a label printer for folders and file boxes",
        "sticker maker organising binders",
    ),
    (
        "OF5273",
        "a webcam with a privacy shutter",
        "video-call lens physically blockable",
    ),
    (
        "OF5274",
        "a noise-cancelling headset for open-plan offices",
        "earphones silencing workplace chatter",
    ),
    (
        "OF5275",
        "a document scanner that turns receipts into searchable files",
        "digitise paper bills as PDFs",
    ),
    (
        "OF5276",
        "an ergonomic chair with lumbar support",
        "seat relieving backache",
    ),
    (
        "OF5277",
        "a whiteboard that saves drawings to the cloud",
        "marker panel syncing sketches online",
    ),
    (
        "OF5278",
        "a laminator that seals menus and posters in clear plastic",
        "gadget encasing signs inside shielding film",
    ),
    (
        "OF5279",
        "a desk lamp that shifts from cool to warm light in the evening",
        "reading lantern changing tint toward amber past sunset",
    ),
    // Fitness and health.
    (
        "FB3650",
        "a heart-rate strap that pairs with running watches",
        "chest band measuring pulse during jogging",
    ),
    (
        "FB3651",
        "a foam roller that eases sore muscles after training",
        "massage cylinder relieving stiffness post workout",
    ),
    (
        "FB3652",
        "a set of adjustable dumbbells from two to twenty kilograms",
        "variable weights lifting indoors",
    ),
    (
        "FB3653",
        "a yoga mat with a non-slip surface",
        "grippy underlay doing stretching poses",
    ),
    (
        "FB3654",
        "a smart bottle that reminds you to drink",
        "flask nudging me towards hydration",
    ),
    (
        "FB3655",
        "a blood-pressure monitor for the upper arm",
        "cuff checking hypertension",
    ),
    (
        "FB3656",
        "a jump rope that counts skips",
        "cord tallying hops during cardio",
    ),
    (
        "FB3657",
        "a rowing machine that folds against the wall",
        "foldable indoor erg doing paddling workouts",
    ),
    (
        "FB3658",
        "a sleep tracker worn on the wrist",
        "band logging slumber quality",
    ),
    (
        "FB3659",
        "an electric toothbrush with a two-minute timer",
        "powered dental brush pacing brushing sessions",
    ),
];

/// What an identifier query asks about a code: words no passage uses.
const ASKS: [&str; 8] = [
    "warranty",
    "manual",
    "datasheet",
    "price",
    "spare parts",
    "firmware",
    "recall notice",
    "invoice",
];

/// The code families: prefix and the number of the first product; the distractors of a family are
/// numbered on from the product after its tenth.
const FAMILIES: [(&str, u32); 6] = [
    ("KV", 7310),
    ("GD", 4520),
    ("HT", 6130),
    ("TR", 2840),
    ("OF", 5270),
    ("FB", 3650),
];

/// Distractors per family.
const DISTRACTORS: u32 = 25;

/// The templates of the distractors: `{code}`, `{colour}`, `{city}`, `{n}` and `{year}` filled in.
const TEMPLATES: [&str; 5] = [
    "The {code} ships in a {colour} carton and weighs {n} grams.",
    "Stock of the {code} is held at the {city} depot, with {n} units on the shelf.",
    "The {code} was discontinued in {year} and replaced by a newer revision.",
    "Each {code} carries a {colour} label and a batch code starting with {n}.",
    "The {code} is sold only through the {city} catalogue at {n} euros.",
];
const COLOURS: [&str; 7] = ["red", "blue", "green", "grey", "black", "white", "yellow"];
const CITIES: [&str; 7] = ["Leeds", "Lyon", "Porto", "Graz", "Turin", "Ghent", "Malmo"];

/// A passage of the corpus: its label (in its metadata) and text.
struct Passage {
    label: String,
    text: String,
}

/// The two kinds of query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// What a product does, in words the corpus does not use.
    Paraphrase,
    /// A product's code.
    Identifier,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Paraphrase => "paraphrase",
            Kind::Identifier => "identifier",
        }
    }
}

/// A labelled query: its text, kind and the one relevant passage's label.
struct Query {
    text: String,
    kind: Kind,
    relevant: String,
}

/// The corpus: the products first (`p000`…`p059`), then the distractors.
fn corpus() -> Vec<Passage> {
    let products = PRODUCTS
        .iter()
        .map(|(code, what, _)| format!("The {code} is {what}."));
    let codes = FAMILIES.iter().flat_map(|(prefix, first)| {
        (first + 10..first + 10 + DISTRACTORS).map(move |number| format!("{prefix}{number}"))
    });
    let distractors = codes.enumerate().map(|(i, code)| {
        TEMPLATES[i % TEMPLATES.len()]
            .replace("{code}", &code)
            .replace("{colour}", COLOURS[i % COLOURS.len()])
            .replace("{city}", CITIES[(i / 2) % CITIES.len()])
            .replace("{n}", &(120 + (i * 37) % 880).to_string())
            .replace("{year}", &(2011 + i % 12).to_string())
    });
    products
        .chain(distractors)
        .enumerate()
        .map(|(index, text)| Passage {
            label: label(index),
            text,
        })
        .collect()
}

/// The label of the passage at `index`: `p007`.
fn label(index: usize) -> String {
    format!("p{index:03}")
}

/// The queries: each product by paraphrase, then each by identifier.
fn queries() -> Vec<Query> {
    let paraphrases = PRODUCTS
        .iter()
        .enumerate()
        .map(|(index, (_, _, paraphrase))| Query {
            text: (*paraphrase).to_owned(),
            kind: Kind::Paraphrase,
            relevant: label(index),
        });
    let identifiers = PRODUCTS
        .iter()
        .enumerate()
        .map(|(index, (code, _, _))| Query {
            text: format!("{code} {}", ASKS[index % ASKS.len()]),
            kind: Kind::Identifier,
            relevant: label(index),
        });
    paraphrases.chain(identifiers).collect()
}

/// An app whose knowledge base embeds with all-MiniLM-L6-v2 from `folder`.
async fn app_with_minilm(db: TestDb, folder: std::path::PathBuf) -> TestApp {
    let mut config = Config::default();
    config.providers.insert(
        "local".to_owned(),
        ProviderConfig {
            kind: ProviderKind::Local,
            base_url: String::new(),
            path: Some(folder),
            api_key_env: None,
            connect_timeout_secs: 10,
            read_timeout_secs: 120,
            max_retries: 0,
            models: vec!["all-minilm-l6-v2".to_owned()],
        },
    );
    config.knowledge.embedder = Some(EMBEDDER.to_owned());
    spawn_app_with(db, config).await
}

/// The labels of the top results of one search.
async fn top_labels(app: &TestApp, query: &str, search_type: &str) -> Vec<String> {
    let body = json!({"query": query, "search_type": search_type, "max_results": TOP});
    let response = app
        .request(Method::POST, "/knowledge/search", &app.admin_key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "search {body}: {text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["search_type"], search_type, "no fallback: {answer}");
    let results = answer["results"].as_array().expect("results");
    results
        .iter()
        .map(|result| {
            let label = result["metadata"]["passage"].as_str();
            label.unwrap_or_else(|| panic!("a passage label in {result}"))
        })
        .map(str::to_owned)
        .collect()
}

/// The search types compared, in the order they are reported.
const SEARCH_TYPES: [&str; 3] = ["keyword", "vector", "hybrid"];

/// One search type's hits over the queries, overall and by kind, and the queries it missed.
#[derive(Default)]
struct Recall {
    by_kind: BTreeMap<Kind, (usize, usize)>,
    missed: Vec<String>,
}

impl Recall {
    fn add(&mut self, query: &Query, hit: bool) {
        let (hits, queries) = self.by_kind.entry(query.kind).or_default();
        *hits += usize::from(hit);
        *queries += 1;
        if !hit {
            self.missed
                .push(format!("{:?} ({})", query.text, query.relevant));
        }
    }

    /// recall@5 over all queries.
    fn overall(&self) -> f64 {
        let (hits, queries) = self
            .by_kind
            .values()
            .fold((0, 0), |(h, q), (hits, queries)| (h + hits, q + queries));
        hits as f64 / queries as f64
    }

    /// recall@5 over the queries of one kind.
    fn of(&self, kind: Kind) -> f64 {
        let (hits, queries) = self.by_kind[&kind];
        hits as f64 / queries as f64
    }
}

/// The recall of each search type over `queries`, each query searched with each type.
async fn measure(app: &TestApp, queries: &[Query]) -> BTreeMap<&'static str, Recall> {
    let mut recalls = BTreeMap::new();
    for search_type in SEARCH_TYPES {
        let recall: &mut Recall = recalls.entry(search_type).or_default();
        for batch in queries.chunks(10) {
            let found = join_all(
                batch
                    .iter()
                    .map(|query| top_labels(app, &query.text, search_type)),
            )
            .await;
            for (query, labels) in batch.iter().zip(found) {
                recall.add(query, labels.contains(&query.relevant));
            }
        }
    }
    recalls
}

/// The figures, one line overall and one per kind of query:
/// `keyword 0.50, vector 0.51, hybrid 0.98`.
fn figures(recalls: &BTreeMap<&str, Recall>, kind: Option<Kind>) -> String {
    SEARCH_TYPES
        .iter()
        .map(|search_type| {
            let recall = &recalls[search_type];
            let figure = kind.map_or_else(|| recall.overall(), |kind| recall.of(kind));
            format!("{search_type} {figure:.2}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn hybrid_search_recalls_more_than_keyword_or_vector_alone(db: TestDb) {
    let Some(folder) = agentd_testkit::python::minilm() else {
        return;
    };
    let backend = match db {
        TestDb::Sqlite { .. } => "sqlite",
        TestDb::Postgres { .. } => "postgres",
    };
    let app = app_with_minilm(db, folder).await;

    // Each passage its own content (one chunk), labelled in its metadata; a few at a time.
    let passages = corpus();
    assert!(passages.len() >= 200, "a corpus of at least 200 passages");
    for batch in passages.chunks(20) {
        join_all(batch.iter().map(|passage| {
            completed(
                &app,
                json!({"text": passage.text, "metadata": {"passage": passage.label}}),
            )
        }))
        .await;
    }

    let queries = queries();
    let recalls = measure(&app, &queries).await;

    // The figures go to the test output whether the test passes or not: libtest captures
    // `eprintln!`, not stderr written directly.
    let mut report = format!(
        "knowledge recall@{TOP} ({backend}, {} passages, {} queries): {}",
        passages.len(),
        queries.len(),
        figures(&recalls, None)
    );
    for kind in [Kind::Paraphrase, Kind::Identifier] {
        let count = queries.iter().filter(|query| query.kind == kind).count();
        report.push_str(&format!(
            "\n  {} queries ({count}): {}",
            kind.name(),
            figures(&recalls, Some(kind))
        ));
    }
    std::io::stderr()
        .write_all(format!("{report}\n").as_bytes())
        .unwrap();

    let [keyword, vector, hybrid] = SEARCH_TYPES.map(|search_type| &recalls[search_type]);
    let missed = format!("hybrid missed {:?}", hybrid.missed);
    assert!(
        hybrid.overall() > keyword.overall() && hybrid.overall() > vector.overall(),
        "{report}\n{missed}"
    );
    assert!(hybrid.overall() >= 0.9, "{report}\n{missed}");
    // Each single method is good at one kind and poor at the other; hybrid is good at both.
    assert!(keyword.of(Kind::Identifier) >= 0.9, "{report}");
    assert!(keyword.of(Kind::Paraphrase) <= 0.1, "{report}");
    assert!(vector.of(Kind::Paraphrase) >= 0.8, "{report}");
    assert!(vector.of(Kind::Identifier) <= 0.5, "{report}");
    for kind in [Kind::Paraphrase, Kind::Identifier] {
        assert!(hybrid.of(kind) >= 0.9, "{report}\n{missed}");
    }
}
