//! Sakura's price list and the `ServiceClass` joins, with fixture prices (not Sakura's real ones):
//! `GET /public/price` (no authentication), `GET /product/server`, `GET /product/disk`.
//! The shape follows iaas-api-go's naked types: `Price` is an object, or `[]` for a class
//! without a published price.

use serde_json::{Value, json};

const CORES: [u32; 10] = [1, 2, 3, 4, 5, 6, 8, 10, 12, 16];
const MEMORY_GB: [u32; 12] = [1, 2, 3, 4, 5, 6, 8, 12, 16, 24, 32, 64];
/// Disk plan 4 (SSD) sizes in GB.
pub const SSD_SIZES_GB: [u32; 8] = [20, 40, 60, 80, 100, 250, 500, 1024];

/// `cloud/plan/core/2core-4gb`: the class a plan and its servers carry.
pub fn server_class(cpu: u32, memory_gb: u32) -> String {
    format!("cloud/plan/core/{cpu}core-{memory_gb}gb")
}

pub fn disk_class(size_gb: u32) -> String {
    format!("cloud/disk/ssd/{size_gb}g")
}

/// Fixture list prices in yen: hourly × 24 caps at the daily price, daily × 20 at the monthly.
fn price(monthly: u64, zone: &str) -> Value {
    let daily = monthly / 20;
    json!({"Base": 0, "Hourly": (daily / 18).max(1), "Daily": daily, "Monthly": monthly, "Zone": zone})
}

pub fn price_list(zone: &str, now: &str) -> Value {
    let mut classes = Vec::new();
    let mut id = 50_000;
    let mut push = |path: String, name: String, price: Value| {
        id += 1;
        classes.push(json!({
            "ServiceClassID": id, "ServiceClassName": name, "ServiceClassPath": path,
            "DisplayName": name, "IsPublic": true, "ServiceCharge": 0, "Price": price,
        }));
    };
    for c in CORES {
        for m in MEMORY_GB {
            let monthly = 1_100 * u64::from(c) + 660 * u64::from(m);
            push(server_class(c, m), format!("{c}コア/{m}GB"), price(monthly, zone));
        }
    }
    for gb in SSD_SIZES_GB {
        push(disk_class(gb), format!("SSD {gb}GB"), price(22 * u64::from(gb), zone));
    }
    // A class without a published price: `Price` is an empty array, as the real API sends it.
    push("cloud/plan/core/1core-1gb-gpu".into(), "GPU (unpriced)".into(), json!([]));
    json!({"Count": classes.len(), "ResponsedAt": now, "ServiceClasses": classes, "is_ok": true})
}

pub fn server_plans(numbers: bool) -> Vec<Value> {
    let mut plans = Vec::new();
    for c in CORES {
        for m in MEMORY_GB {
            let id = 100_000_000 + u64::from(m) * 1000 + u64::from(c);
            plans.push(json!({
                "ID": if numbers { json!(id) } else { json!(id.to_string()) },
                "Name": format!("プラン/{c}Core-{m}GB"), "CPU": c, "MemoryMB": m * 1024, "GPU": 0,
                "Commitment": "standard", "Generation": 100, "ServiceClass": server_class(c, m), "Availability": "available",
            }));
        }
    }
    plans
}

pub fn disk_plans() -> Value {
    let sizes: Vec<Value> = SSD_SIZES_GB
        .iter()
        .map(|gb| json!({"SizeMB": gb * 1024, "DisplaySize": gb, "DisplaySuffix": "GB", "ServiceClass": disk_class(*gb), "Availability": "available"}))
        .collect();
    json!([
        {"ID": 4, "Name": "SSDプラン", "StorageClass": "iscsi1204", "Availability": "available", "Size": sizes},
        {"ID": 2, "Name": "標準プラン", "StorageClass": "iscsi1204", "Availability": "available", "Size": []},
    ])
}
