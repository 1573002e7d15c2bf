//! The command line: `serve` (default), `migrate`, `agent create`, `agent list`,
//! `kb import`, `train sentiment|intents|retrieval`, `eval sentiment|intents|retrieval`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::agents::create_agent;
use crate::ai::intent::{
    Calibration, IntentHead, LabelledText, TrainOptions, TuneOptions, calibrate_on,
    choose_threshold, data_hash, embed_examples, evaluate as evaluate_intents, fine_tune,
    joint_head_for, read_labelled_csv, train_calibrated, tuned_data_hash, tuned_encoder_id,
};
use crate::ai::retrieval::{self, Judged, Passage};
use crate::ai::sentiment::{self, Sentiment};
use crate::ai::{Embedder, EmbedderOptions, Embedding, TUNING_FILE, passage_questions, passages};
use crate::config::{LogFormat, Settings};
use crate::domain::AgentRole;
use crate::kb::KnowledgeBase;
use crate::startup::Application;
use crate::store::Store;

#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Real-time support and coaching server with local AI"
)]
pub struct Cli {
    /// Configuration file (default: ./switchboard.toml if it exists).
    #[arg(long, short, global = true, env = "SWITCHBOARD_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage agent accounts.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Train a model of the AI engine and write it under models/.
    #[command(subcommand)]
    Train(TrainCommand),
    /// Evaluate a model of the AI engine on a labelled test set.
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Manage the knowledge base.
    #[command(subcommand)]
    Kb(KbCommand),
}

#[derive(Debug, Subcommand)]
pub enum KbCommand {
    /// Check a knowledge-base folder and make the database's knowledge base equal to it
    /// (added, changed and removed articles and intents). Running servers pick it up at their
    /// next start.
    Import {
        #[arg(default_value = KnowledgeBase::DEFAULT_DIR)]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// The sentiment head and its fusion with VADER, from SST-2, CR and the support utterances.
    Sentiment(TrainSentimentArgs),
    /// An intent head from the knowledge base's intents or a `text,label` CSV. (The server
    /// trains its own from the knowledge base at start; this is for inspecting one.)
    Intents(TrainIntentsArgs),
    /// A query encoder for the knowledge base (minutes): MiniLM fine-tuned so that the
    /// intents' examples land nearer the passages of their article, the passages keeping the
    /// shipped encoder's embeddings. The server embeds questions with it when
    /// `ai.query_encoder` names it.
    Retrieval(TrainRetrievalArgs),
}

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// VADER alone, the head alone and the fused model on a `text,label` CSV (binary or 3-class).
    Sentiment(EvalSentimentArgs),
    /// Train an intent head on one CSV as the server does (temperature and neighbour weight
    /// chosen on a held-out fifth of it; over a fine-tuned encoder, the head trained with it,
    /// calibrated on the validation CSV), choose its out-of-scope threshold on another, test
    /// it on a third.
    Intents(EvalIntentsArgs),
    /// Dense, BM25, reciprocal-rank and convex fusion on a JSON-lines corpus and queries, or
    /// on the knowledge base.
    Retrieval(EvalRetrievalArgs),
}

#[derive(Debug, clap::Args)]
pub struct TrainIntentsArgs {
    /// A `text,label` CSV; without it, the knowledge base's intents.
    #[arg(long)]
    data: Option<PathBuf>,
    /// The knowledge-base folder.
    #[arg(long, default_value = "knowledge-base")]
    kb: PathBuf,
    /// Where to write `intents.safetensors` and `intents.json`.
    #[arg(long, default_value = "data/cache/trained")]
    out: PathBuf,
    #[command(flatten)]
    encoder: EncoderArgs,
    #[command(flatten)]
    tune: TuneArgs,
}

#[derive(Debug, clap::Args)]
pub struct TuneArgs {
    /// First fine-tune the encoder on the training examples (minutes, not seconds) and write
    /// it to this folder as a model folder, with the head trained alongside. That head is the
    /// one used (for `eval`, calibrated on the validation set when there is one), as it is
    /// when `--minilm` names a folder fine-tuned on the same examples.
    #[arg(long, value_name = "DIR")]
    fine_tune: Option<PathBuf>,
    /// Passes over the training examples when fine-tuning.
    #[arg(long, default_value_t = TuneOptions::default().epochs)]
    tune_epochs: usize,
    /// Train the word embeddings too when fine-tuning (slower steps).
    #[arg(long)]
    tune_word_embeddings: bool,
}

#[derive(Debug, clap::Args)]
pub struct EvalIntentsArgs {
    /// Training CSV (`text,label`; `oos` is the out-of-scope label).
    #[arg(long)]
    train: PathBuf,
    /// Test CSV.
    #[arg(long)]
    test: PathBuf,
    /// Validation CSV on which the out-of-scope threshold is chosen.
    #[arg(long)]
    val: Option<PathBuf>,
    /// Lowest out-of-scope recall the threshold must reach on the validation set.
    #[arg(long, default_value_t = 0.85)]
    min_oos_recall: f32,
    /// Also write the figures as JSON here.
    #[arg(long)]
    report: Option<PathBuf>,
    #[command(flatten)]
    encoder: EncoderArgs,
    #[command(flatten)]
    tune: TuneArgs,
}

#[derive(Debug, clap::Args)]
pub struct EvalRetrievalArgs {
    /// `{"id","title","text"}` per line.
    #[arg(long, required_unless_present = "kb", requires = "queries")]
    corpus: Option<PathBuf>,
    /// `{"id","text","relevant":[ids]}` per line.
    #[arg(long, required_unless_present = "kb", requires = "corpus")]
    queries: Option<PathBuf>,
    /// Instead of `--corpus` and `--queries`, a knowledge-base folder: its passages as the
    /// corpus, and each example of an intent that names an article as a query answered by
    /// that article's passages.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["corpus", "queries"])]
    kb: Option<PathBuf>,
    /// Also write the figures as JSON here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// First fine-tune a query encoder on the tuning queries (two in five) against the
    /// corpus as `--minilm` embeds it, write it to this folder as a model folder, and embed
    /// the queries with it (the passages keep `--minilm`'s embeddings).
    #[arg(long, value_name = "DIR")]
    tune_queries: Option<PathBuf>,
    /// Embed the queries with this folder, one `--tune-queries` wrote for the same corpus.
    #[arg(long, value_name = "DIR", conflicts_with = "tune_queries")]
    query_encoder: Option<PathBuf>,
    /// Passes over the tuning queries when fine-tuning.
    #[arg(long, default_value_t = retrieval::QueryTuneOptions::default().epochs)]
    tune_epochs: usize,
    #[command(flatten)]
    encoder: EncoderArgs,
}

#[derive(Debug, clap::Args)]
pub struct TrainRetrievalArgs {
    /// The knowledge-base folder: each example of an intent that names an article is a
    /// question answered by that article's passages.
    #[arg(long, default_value = KnowledgeBase::DEFAULT_DIR)]
    kb: PathBuf,
    /// Where to write the query encoder (a model folder), for `ai.query_encoder`.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Passes over the questions.
    #[arg(long, default_value_t = retrieval::QueryTuneOptions::default().epochs)]
    tune_epochs: usize,
    #[command(flatten)]
    encoder: EncoderArgs,
}

#[derive(Debug, clap::Args)]
pub struct TrainSentimentArgs {
    /// SST-2 folder (train.csv for the head, val.csv for the fusion).
    #[arg(long, default_value = "../shared/datasets/sst2")]
    sst2: PathBuf,
    /// CR folder (its train.csv).
    #[arg(long, default_value = "../shared/datasets/cr_customer_reviews")]
    cr: PathBuf,
    /// The team's support utterances.
    #[arg(long, default_value = "datasets/sentiment/support_train.csv")]
    support: PathBuf,
    /// Train on the reviews only (a baseline: the head then never sees a neutral example).
    #[arg(long)]
    without_support: bool,
    /// Where to write the model.
    #[arg(long, default_value = Sentiment::DEFAULT_DIR)]
    out: PathBuf,
    #[command(flatten)]
    encoder: EncoderArgs,
}

#[derive(Debug, clap::Args)]
pub struct EvalSentimentArgs {
    /// The test set: CSV with `text,label` (negative / neutral / positive).
    #[arg(long)]
    test: PathBuf,
    /// The sentiment model folder.
    #[arg(long, default_value = Sentiment::DEFAULT_DIR)]
    model: PathBuf,
    /// Also write the figures as JSON here.
    #[arg(long)]
    report: Option<PathBuf>,
    #[command(flatten)]
    encoder: EncoderArgs,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Create an agent and print its API token (shown once).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: String,
        #[arg(long, value_enum, default_value_t = RoleArg::Agent)]
        role: RoleArg,
        /// Comma-separated skills, e.g. billing,safety.
        #[arg(long, value_delimiter = ',')]
        skills: Vec<String>,
        /// Conversations this agent may hold at once.
        #[arg(long, default_value_t = 5)]
        max_concurrent: i64,
    },
    /// List agents.
    List,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Agent,
    Admin,
}

impl From<RoleArg> for AgentRole {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Agent => AgentRole::Agent,
            RoleArg::Admin => AgentRole::Admin,
        }
    }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref())?;
    init_tracing(&settings);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Migrate => {
            let store = open(&settings).await?;
            store.migrate().await.context("migration failed")?;
            println!("database migrated");
            Ok(())
        }
        Command::Agent(AgentCommand::Create {
            name,
            email,
            role,
            skills,
            max_concurrent,
        }) => {
            let store = open(&settings).await?;
            store.migrate().await.context("migration failed")?;
            let (agent, token) =
                create_agent(&store, &name, &email, role.into(), &skills, max_concurrent).await?;
            println!(
                "created {} agent {} <{}> id {}",
                agent.role, agent.name, agent.email, agent.id
            );
            println!("API token (shown once, store it now): {token}");
            Ok(())
        }
        Command::Kb(KbCommand::Import { dir }) => {
            let kb = KnowledgeBase::read(&dir)?;
            let store = open(&settings).await?;
            store.migrate().await.context("migration failed")?;
            let rules = crate::automation::stored_rules(&store).await?;
            let report = crate::knowledge::import(&store, &kb, &rules, |done, total| {
                let width = 40 * done / total.max(1);
                eprint!(
                    "\r[{}{}] {done}/{total}",
                    "#".repeat(width),
                    " ".repeat(40 - width)
                );
            })
            .await?;
            eprintln!();
            println!(
                "articles: {} added, {} changed, {} removed; intents: {} added, {} changed, {} removed; coaching cards: {} added, {} changed, {} removed; {} unchanged",
                report.articles_added,
                report.articles_updated,
                report.articles_removed,
                report.intents_added,
                report.intents_updated,
                report.intents_removed,
                report.cards_added,
                report.cards_updated,
                report.cards_removed,
                report.unchanged
            );
            println!(
                "knowledge base revision {}: running servers apply it within {} s",
                store.knowledge_revision().await?,
                crate::knowledge::FOLLOW_EVERY.as_secs()
            );
            Ok(())
        }
        Command::Train(TrainCommand::Sentiment(args)) => train_sentiment(args),
        Command::Eval(EvalCommand::Sentiment(args)) => eval_sentiment(args),
        Command::Train(TrainCommand::Intents(args)) => train_intents(args),
        Command::Train(TrainCommand::Retrieval(args)) => train_retrieval(args),
        Command::Eval(EvalCommand::Intents(args)) => eval_intents(args),
        Command::Eval(EvalCommand::Retrieval(args)) => eval_retrieval(args),
        Command::Agent(AgentCommand::List) => {
            let store = open(&settings).await?;
            for a in store.agents().await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\tskills={}\tmax={}",
                    a.id,
                    a.role,
                    a.status,
                    a.name,
                    a.email,
                    a.skills.join(","),
                    a.max_concurrent
                );
            }
            Ok(())
        }
    }
}

/// The encoder options every training and evaluation command takes.
#[derive(Debug, clap::Args)]
pub struct EncoderArgs {
    /// The MiniLM model folder.
    #[arg(long, default_value = Embedder::DEFAULT_DIR)]
    minilm: PathBuf,
    /// Encoder threads (default: one per CPU; 1 is faster on a machine busy with other work).
    #[arg(long)]
    threads: Option<usize>,
}

fn load_embedder(args: &EncoderArgs) -> anyhow::Result<Embedder> {
    let mut options = EmbedderOptions::default();
    options.threads = args.threads.unwrap_or(options.threads);
    Ok(Embedder::load(&args.minilm, options)?)
}

/// The encoder intents are embedded with, and its folder: the one of `encoder`, or, with
/// `--fine-tune`, that one fine-tuned on `rows` first.
fn intent_embedder(
    encoder: &EncoderArgs,
    tune: &TuneArgs,
    rows: &[LabelledText],
) -> anyhow::Result<(Embedder, PathBuf)> {
    let Some(out) = &tune.fine_tune else {
        return Ok((load_embedder(encoder)?, encoder.minilm.clone()));
    };
    let options = TuneOptions {
        epochs: tune.tune_epochs,
        word_embeddings: tune.tune_word_embeddings,
        ..TuneOptions::default()
    };
    println!(
        "fine-tuning {} on {} examples for {} epochs",
        encoder.minilm.display(),
        rows.len(),
        options.epochs
    );
    let start = std::time::Instant::now();
    let report = fine_tune(&encoder.minilm, rows, &options, out, |epoch, loss| {
        println!(
            "  epoch {epoch}: mean loss {loss:.4} ({:.0} s)",
            start.elapsed().as_secs_f64()
        );
    })?;
    println!(
        "fine-tuned in {:.0} s; wrote {}",
        report.seconds,
        out.display()
    );
    let embedder = load_embedder(&EncoderArgs {
        minilm: out.clone(),
        threads: encoder.threads,
    })?;
    Ok((embedder, out.clone()))
}

/// The intent head for `train_set` (the examples of `hash`, embedded by the encoder in
/// `encoder_dir`), chosen as the server chooses it: the head trained with that encoder when it
/// is a fine-tuned one, tuned on exactly these examples (it keeps them as neighbours, and is
/// calibrated on `held_out` when there is such data the encoder has not seen); otherwise one
/// trained over the embeddings and calibrated on a held-out fifth ([`train_calibrated`]).
fn intent_head(
    encoder_dir: &Path,
    train_set: &[(Embedding, String)],
    hash: String,
    held_out: Option<&[(Embedding, String)]>,
) -> anyhow::Result<ChosenHead> {
    let joint = if encoder_dir.join(TUNING_FILE).exists() {
        let tuned_hash = tuned_data_hash(&hash, &tuned_encoder_id(encoder_dir)?);
        joint_head_for(encoder_dir, &tuned_hash, train_set)?
    } else {
        None
    };
    let Some(mut head) = joint else {
        let (head, calibration) = train_calibrated(train_set, hash, TrainOptions::default())?;
        return Ok(ChosenHead {
            head,
            calibration: Some(calibration),
            joint: false,
        });
    };
    let calibration = match held_out {
        Some(held_out) => Some(calibrate_on(&mut head, held_out)?),
        None => None,
    };
    Ok(ChosenHead {
        head,
        calibration,
        joint: true,
    })
}

/// An intent head [`intent_head`] chose, and how it was calibrated.
struct ChosenHead {
    head: IntentHead,
    calibration: Option<Calibration>,
    /// Whether it is the head trained with a fine-tuned encoder.
    joint: bool,
}

fn train_sentiment(args: TrainSentimentArgs) -> anyhow::Result<()> {
    let embedder = load_embedder(&args.encoder)?;
    let sources = sentiment::TrainSources {
        sst2: Some(args.sst2),
        cr: Some(args.cr),
        support: (!args.without_support).then_some(args.support),
    };
    let start = std::time::Instant::now();
    let model = sentiment::train(&embedder, &sources, Default::default())?;
    model.save(&args.out)?;
    for report in &model.info().validation {
        println!("held-out {}", report.render());
    }
    println!(
        "trained in {:.1} s (embedding included); wrote {}",
        start.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}

fn eval_sentiment(args: EvalSentimentArgs) -> anyhow::Result<()> {
    let embedder = load_embedder(&args.encoder)?;
    let model = Sentiment::load(&args.model)?;
    let rows = read_labelled_csv(&args.test)?;
    let name = args.test.display().to_string();
    let report = sentiment::evaluate(&model, &embedder, &name, &rows)?;
    print!("{}", report.render());
    if let Some(path) = args.report {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(&path, json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn train_intents(args: TrainIntentsArgs) -> anyhow::Result<()> {
    let rows = match &args.data {
        Some(path) => read_labelled_csv(path)?,
        None => KnowledgeBase::read(&args.kb)?
            .intent_examples()
            .into_iter()
            .map(|(text, label)| LabelledText { text, label })
            .collect(),
    };
    let start = std::time::Instant::now();
    let (embedder, encoder_dir) = intent_embedder(&args.encoder, &args.tune, &rows)?;
    let embedded = embed_examples(&embedder, &rows)?;
    let ChosenHead {
        head, calibration, ..
    } = intent_head(&encoder_dir, &embedded, data_hash(&rows), None)?;
    head.save(&args.out, "intents")?;
    println!(
        "trained on {} examples of {} intents in {:.1} s (embedding, calibration and any fine-tuning included); wrote {}",
        rows.len(),
        head.info().labels.len(),
        start.elapsed().as_secs_f64(),
        args.out.display()
    );
    print_calibration(
        calibration.as_ref(),
        "one example in five (probe head trained on the rest)",
    );
    Ok(())
}

fn eval_intents(args: EvalIntentsArgs) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    let train_rows = read_labelled_csv(&args.train)?;
    let (embedder, encoder_dir) = intent_embedder(&args.encoder, &args.tune, &train_rows)?;
    let train_set = embed_examples(&embedder, &train_rows)?;
    let val_set = match &args.val {
        Some(val) => Some(embed_examples(&embedder, &read_labelled_csv(val)?)?),
        None => None,
    };
    let ChosenHead {
        mut head,
        calibration,
        joint,
    } = intent_head(
        &encoder_dir,
        &train_set,
        data_hash(&train_rows),
        val_set.as_deref(),
    )?;
    let trained_s = start.elapsed().as_secs_f64();
    let test_set = embed_examples(&embedder, &read_labelled_csv(&args.test)?)?;
    let validation = match &val_set {
        Some(val_set) => Some(choose_threshold(&mut head, val_set, args.min_oos_recall)?),
        None => None,
    };
    let test = evaluate_intents(&head, &test_set)?;
    println!(
        "trained on {} examples ({} labels) in {trained_s:.1} s, embedding, calibration and any fine-tuning included",
        train_set.len(),
        head.info().labels.len()
    );
    let held_out = if joint {
        "the validation set"
    } else {
        "one example in five (probe head trained on the rest)"
    };
    print_calibration(calibration.as_ref(), held_out);
    println!("out-of-scope threshold: {:.3}", head.info().threshold);
    if let Some(v) = &validation {
        println!("validation: {}", v.render());
    }
    println!("test:       {}", test.render());
    if let Some(path) = args.report {
        let report = serde_json::json!({
            "train": args.train, "test": args.test, "validation_file": args.val,
            "train_examples": train_set.len(),
            "labels": head.info().labels.len(),
            "threshold": head.info().threshold,
            "temperature": head.info().temperature,
            "neighbour_weight": head.info().neighbour_weight,
            "neighbours": head.info().neighbours,
            "calibration": calibration,
            "train_seconds": trained_s,
            "fine_tuned_encoder": args.tune.fine_tune,
            "fine_tune_epochs": args.tune.fine_tune.as_ref().map(|_| args.tune.tune_epochs),
            "head": if joint { "trained with the encoder" } else { "trained over the embeddings" },
            "validation": validation,
            "test_metrics": test,
            "options": head.info().options,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// What the calibration chose on held-out examples, and how the head did there; a head fine-tuned
/// with its encoder and given no data the encoder has not seen is not calibrated.
fn print_calibration(calibration: Option<&Calibration>, held_out: &str) {
    let Some(calibration) = calibration else {
        println!(
            "the head trained with the encoder, uncalibrated (temperature 1, no vote): no held-out data the encoder has not seen"
        );
        return;
    };
    println!(
        "on {held_out}: temperature {:.2}, neighbour weight {:.1}",
        calibration.temperature, calibration.neighbour_weight
    );
    println!("  network alone:     {}", calibration.before.render());
    println!("  calibrated, mixed: {}", calibration.after.render());
}

/// The knowledge base's passages and [`passage_questions`], as a retrieval set.
fn knowledge_base_retrieval_set(dir: &Path) -> anyhow::Result<(Vec<Passage>, Vec<Judged>)> {
    let kb = KnowledgeBase::read(dir)?;
    let corpus = passages(&kb);
    let questions = passage_questions(&kb, &corpus);
    Ok((corpus, questions))
}

/// Fine-tunes a query encoder from `--minilm` on `training` against `passages` (their
/// embeddings by `--minilm`) into `out`, printing its progress.
fn tune_query_encoder(
    encoder: &EncoderArgs,
    passages: &[Embedding],
    training: &[retrieval::TrainingQuery],
    epochs: usize,
    out: &Path,
) -> anyhow::Result<()> {
    let options = retrieval::QueryTuneOptions {
        epochs,
        ..Default::default()
    };
    println!(
        "fine-tuning a query encoder on {} questions against {} passages",
        training.len(),
        passages.len()
    );
    let report = retrieval::tune_queries(
        &encoder.minilm,
        passages,
        training,
        &options,
        out,
        |epoch, loss| println!("  epoch {epoch}: mean loss {loss:.4}"),
    )?;
    println!("  {:.0} s, written to {}", report.seconds, out.display());
    Ok(())
}

fn train_retrieval(args: TrainRetrievalArgs) -> anyhow::Result<()> {
    let embedder = load_embedder(&args.encoder)?;
    let (corpus, questions) = knowledge_base_retrieval_set(&args.kb)?;
    let passages = retrieval::embed_corpus(&embedder, &corpus)?;
    let training = retrieval::training_queries(&corpus, &questions)?;
    tune_query_encoder(
        &args.encoder,
        &passages,
        &training,
        args.tune_epochs,
        &args.out,
    )
}

fn eval_retrieval(args: EvalRetrievalArgs) -> anyhow::Result<()> {
    let embedder = load_embedder(&args.encoder)?;
    let (corpus, queries) = match (&args.kb, &args.corpus, &args.queries) {
        (Some(dir), _, _) => knowledge_base_retrieval_set(dir)?,
        (None, Some(corpus), Some(queries)) => (
            retrieval::read_corpus(corpus)?,
            retrieval::read_queries(queries)?,
        ),
        _ => anyhow::bail!("give --kb, or --corpus and --queries"),
    };
    let start = std::time::Instant::now();
    let passages = retrieval::embed_corpus(&embedder, &corpus)?;
    let corpus_embedding = start.elapsed();
    if let Some(out) = &args.tune_queries {
        let training = retrieval::tuning_queries(&corpus, &queries)?;
        tune_query_encoder(&args.encoder, &passages, &training, args.tune_epochs, out)?;
    }
    let query_dir = args.tune_queries.as_ref().or(args.query_encoder.as_ref());
    let query_embedder = match query_dir {
        Some(dir) => Some(load_embedder(&EncoderArgs {
            minilm: dir.clone(),
            threads: args.encoder.threads,
        })?),
        None => None,
    };
    let start = std::time::Instant::now();
    let report = retrieval::compare_fusions(
        corpus,
        &passages,
        query_embedder.as_ref().unwrap_or(&embedder),
        &queries,
    )?;
    let seconds = (corpus_embedding + start.elapsed()).as_secs_f64();
    println!(
        "{} passages, {} queries ({} for tuning), {:.1} s",
        report.passages,
        queries.len(),
        report.tuning_queries,
        seconds
    );
    let tried: Vec<String> = report
        .tuning
        .iter()
        .map(|(w, mrr)| format!("{w}: {mrr:.4}"))
        .collect();
    println!(
        "convex fusion, MRR@10 on the tuning queries by dense weight: {}",
        tried.join(", ")
    );
    for (title, rows) in [
        ("held-out queries", &report.held_out),
        ("all queries", &report.all),
    ] {
        println!(
            "\n{title}:\n{:<14} {:>7} {:>7} {:>7} {:>8}",
            "fusion", "MRR@10", "R@1", "R@5", "nDCG@10"
        );
        for (name, m) in rows {
            println!(
                "{name:<14} {:>7.4} {:>7.4} {:>7.4} {:>8.4}",
                m.mrr_at_10, m.recall_at_1, m.recall_at_5, m.ndcg_at_10
            );
        }
    }
    if let Some(path) = args.report {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

async fn open(settings: &Settings) -> anyhow::Result<Store> {
    Store::connect(&settings.database.url, settings.database.max_connections)
        .await
        .with_context(|| format!("cannot open database {}", redact(&settings.database.url)))
}

/// Hides a password in a database URL before it is printed.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => match url[scheme + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
            None => url.to_string(),
        },
        _ => url.to_string(),
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    raise_open_file_limit();
    let app = Application::build(settings.clone())
        .await
        .context("server failed to start")?;
    tracing::info!(
        host = %settings.server.host,
        port = app.port(),
        database = %redact(&settings.database.url),
        "switchboard listening"
    );
    let state = app.state().clone();
    let handle = app.handle();
    let deadline = Duration::from_secs(settings.server.shutdown_timeout_secs);
    tokio::spawn(async move {
        crate::drain::signal().await;
        tracing::info!(deadline_secs = deadline.as_secs(), "draining");
        crate::drain::shutdown(&state, handle, deadline).await;
    });
    app.run_until_stopped()
        .await
        .context("server stopped with an error")
}

/// Each WebSocket holds a file descriptor; lift the soft limit to the hard one.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open file limit"),
    }
}

fn init_tracing(settings: &Settings) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match settings.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}
