//! `ledger list`, `ledger show` and `ledger checkpoint`.

use std::process::ExitCode;

use mmgen::generation::hex;
use mmgen::ledger::{ListFilter, Record, RecordDetails};

use super::TimeWindow;
use crate::cli::{Context, printable, time_text};

pub fn list(ctx: &Context, filter: &ListFilter, json: bool) -> anyhow::Result<ExitCode> {
    let ledger = ctx.open_existing_ledger()?;
    let mut count = 0;
    ledger.for_each(filter, |record| {
        count += 1;
        let line = if json {
            serde_json::to_string(&record).unwrap_or_default()
        } else {
            summary(&record)
        };
        outln!("{line}").map_err(|source| mmgen::ledger::LedgerError::Io {
            path: "stdout".into(),
            source,
        })
    })?;
    if count == 0 && !json {
        errln!("no records");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn show(ctx: &Context, serial: u64, json: bool) -> anyhow::Result<ExitCode> {
    let ledger = ctx.open_existing_ledger()?;
    let Some(record) = ledger.get(serial)? else {
        anyhow::bail!("no record with serial {serial}; `mmgen ledger list` shows the serials");
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&record)?)?;
    } else {
        print_record(&record)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn checkpoint(
    ctx: &Context,
    window: &TimeWindow,
    all: bool,
    json: bool,
    sign: bool,
) -> anyhow::Result<ExitCode> {
    let checkpoints = if sign {
        let Some(keys) = ctx.load_keys_if_present()? else {
            anyhow::bail!(
                "the home {} has no keys, so no checkpoint can be signed; a checkpoint \
                 must be signed with the key that signed the ledger's other checkpoints",
                ctx.home.root().display()
            );
        };
        let mut ledger = ctx.open_existing_ledger()?;
        let signer = super::checkpoint_signer(ctx, &keys, &ledger)?;
        ledger.sign_checkpoint(&signer)?;
        ledger.checkpoints(&window.filter(None))?
    } else {
        ctx.open_existing_ledger()?
            .checkpoints(&window.filter(None))?
    };
    let selected: &[_] = match (all, checkpoints.last()) {
        (true, _) => &checkpoints,
        (false, Some(_)) => &checkpoints[checkpoints.len() - 1..],
        (false, None) => &[],
    };
    if selected.is_empty() {
        anyhow::bail!(
            "no checkpoint in the requested time window; checkpoints are written with every \
             append, so generate an image first or widen --since/--until"
        );
    }
    for (i, checkpoint) in selected.iter().enumerate() {
        if json {
            outln!("{}", serde_json::to_string(checkpoint)?)?;
        } else {
            if i > 0 {
                outln!()?;
            }
            super::write_output(ctx, None, &checkpoint.note)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn summary(record: &Record) -> String {
    let time = time_text(&record.created_at);
    match &record.details {
        RecordDetails::Generation(g) => {
            let prompt = g.prompt.as_deref().unwrap_or("(prompt redacted)");
            format!(
                "{:>6}  {time}  {}  {}  {:?}",
                record.serial,
                printable(&g.model_name),
                g.watermark_payload,
                printable(prompt)
            )
        }
        RecordDetails::Stamp(s) => format!(
            "{:>6}  {time}  stamp  {}  input {}",
            record.serial,
            printable(&s.digital_source_type),
            hex(&s.input_sha256)
        ),
    }
}

fn print_record(record: &Record) -> std::io::Result<()> {
    outln!("serial           {}", record.serial)?;
    outln!("kind             {}", record.kind().name())?;
    outln!("leaf index       {}", record.leaf_index)?;
    outln!("created          {}", time_text(&record.created_at))?;
    match &record.details {
        RecordDetails::Generation(g) => {
            let model = printable(&g.model_name);
            outln!(
                "model            {model} (weights sha256 {})",
                hex(&g.weights_sha256)
            )?;
            let prompt = g.prompt.as_deref().unwrap_or("(redacted)");
            outln!("prompt           {}", printable(prompt))?;
            outln!("prompt sha256    {}", hex(&g.prompt_sha256))?;
            outln!("seed             {}", g.seed)?;
            outln!("steps            {}", g.steps)?;
            outln!("guidance         {}", g.guidance)?;
            outln!("size             {}x{}", g.width, g.height)?;
            outln!("watermark        {}", g.watermark_payload)?;
        }
        RecordDetails::Stamp(s) => {
            outln!("input sha256     {}", hex(&s.input_sha256))?;
            outln!("source type      {}", printable(&s.digital_source_type))?;
        }
    }
    outln!(
        "output           {} sha256 {}",
        printable(&record.output_mime),
        hex(&record.output_sha256)
    )?;
    outln!("manifest         {} bytes", record.manifest.len())?;
    outln!(
        "leaf hash        {} (encoding version {})",
        hex(&record.leaf_hash),
        record.encoding_version
    )?;
    if let Some(prev_hash) = &record.prev_hash {
        outln!("previous hash    {}", hex(prev_hash))?;
    }
    Ok(())
}
