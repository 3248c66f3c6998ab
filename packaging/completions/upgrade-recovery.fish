# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_upgrade_recovery_global_optspecs
    string join \n root= dir= output= v/verbose q/quiet h/help V/version
end

function __fish_upgrade_recovery_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_upgrade_recovery_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_upgrade_recovery_using_subcommand
    set -l cmd (__fish_upgrade_recovery_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c upgrade-recovery -n "__fish_upgrade_recovery_needs_command" -l root -d 'The node\'s root directory; every host path resolves under it' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_needs_command" -l dir -d 'The backup directory, as a path on the node (the wrapper `<dir>/upgrade-recovery.sh` sets UPGRADE_RECOVERY_DIR to its own)' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_needs_command" -l output -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c upgrade-recovery -n "__fish_upgrade_recovery_needs_command" -s v -l verbose -d 'More detail on stderr (-vv: every command run)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_needs_command" -s q -l quiet -d 'Only errors on stderr'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_needs_command" -s h -l help -d 'Print help'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_needs_command" -s V -l version -d 'Print version'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_needs_command" -f -a "launch-backup" -d 'Job entrypoint: prepare the /host jail, chroot, back up'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_needs_command" -f -a "backup" -d 'Take the backup on this host (pin OS, etcd, trees, extras)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_needs_command" -f -a "restore" -d 'Recovery: restore the backup in phases across a reboot'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_needs_command" -f -a "status" -d 'Backup summary, recovery progress, OS deployments, next action'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_needs_command" -f -a "verify" -d 'Check a backup against its manifest; exit 0 only if intact'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_needs_command" -f -a "rollback" -d 'Platform OS rollback by the decision table'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_needs_command" -f -a "stateroot" -d 'OS stateroots: list, cleanup'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_needs_command" -f -a "extract" -d 'Copy files out of a backup (no system change)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_needs_command" -f -a "oadp" -d 'OADP checks for image-based upgrades'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_needs_command" -f -a "ibu" -d 'Image-based upgrade (Lifecycle Agent) troubleshooting on the node'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_needs_command" -f -a "report" -d 'Support bundle of the node-side facts (no key material)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_needs_command" -f -a "tree" -d 'One tree archive alone, for benchmarks and debugging'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_needs_command" -f -a "generate-docs" -d 'Write man pages and shell completions into DIR/man, DIR/completions'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand launch-backup" -l host-dir -d 'Where the Job mounts the host\'s file systems' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand launch-backup" -l min-free -d 'Free space to leave on the backup file system beyond the backup' -r
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand launch-backup" -l threads -d 'Compression threads (default: the CPUs this process may use)' -r
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand launch-backup" -l level -d 'zstd level' -r
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand launch-backup" -l etcd-backup -d 'How the etcd snapshot is taken' -r -f -a "native\t'The v3 Snapshot RPC with the node\'s client certs'
script\t'The node\'s /usr/local/bin/cluster-backup.sh --force'"
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand launch-backup" -l etcd-timeout -d 'Time limit of the etcd snapshot (e.g. 180s, 3m; a bare number is seconds)' -r
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand launch-backup" -l image -d 'An image to back up too (repeatable; implies --with-images)' -r
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand launch-backup" -l root -d 'The node\'s root directory; every host path resolves under it' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand launch-backup" -l dir -d 'The backup directory, as a path on the node (the wrapper `<dir>/upgrade-recovery.sh` sets UPGRADE_RECOVERY_DIR to its own)' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand launch-backup" -l output -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand launch-backup" -l no-nice -d 'Keep normal CPU and I/O priority (default: lowered)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand launch-backup" -l with-images -d 'Also back up the images of the running containers (node\'s skopeo)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand launch-backup" -l replace-backup -d 'Replace the existing backup even when it pins another OS than the booted one (a failed upgrade) or is damaged: a new baseline'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand launch-backup" -l dry-run -d 'Run the checks and print the plan (deployments, cleanup, estimates, space); change nothing'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand launch-backup" -s v -l verbose -d 'More detail on stderr (-vv: every command run)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand launch-backup" -s q -l quiet -d 'Only errors on stderr'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand launch-backup" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand backup" -l min-free -d 'Free space to leave on the backup file system beyond the backup' -r
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand backup" -l threads -d 'Compression threads (default: the CPUs this process may use)' -r
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand backup" -l level -d 'zstd level' -r
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand backup" -l etcd-backup -d 'How the etcd snapshot is taken' -r -f -a "native\t'The v3 Snapshot RPC with the node\'s client certs'
script\t'The node\'s /usr/local/bin/cluster-backup.sh --force'"
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand backup" -l etcd-timeout -d 'Time limit of the etcd snapshot (e.g. 180s, 3m; a bare number is seconds)' -r
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand backup" -l image -d 'An image to back up too (repeatable; implies --with-images)' -r
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand backup" -l root -d 'The node\'s root directory; every host path resolves under it' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand backup" -l dir -d 'The backup directory, as a path on the node (the wrapper `<dir>/upgrade-recovery.sh` sets UPGRADE_RECOVERY_DIR to its own)' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand backup" -l output -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand backup" -l no-nice -d 'Keep normal CPU and I/O priority (default: lowered)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand backup" -l with-images -d 'Also back up the images of the running containers (node\'s skopeo)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand backup" -l replace-backup -d 'Replace the existing backup even when it pins another OS than the booted one (a failed upgrade) or is damaged: a new baseline'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand backup" -l dry-run -d 'Run the checks and print the plan (deployments, cleanup, estimates, space); change nothing'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand backup" -s v -l verbose -d 'More detail on stderr (-vv: every command run)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand backup" -s q -l quiet -d 'Only errors on stderr'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand backup" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand restore" -l etcd-restore -d 'How etcd is restored' -r -f -a "auto\t'The node\'s cluster-restore.sh when it exists, else native'
script\t'/usr/local/bin/cluster-restore.sh <dir>/cluster'
native\t'As the 4.18+ restore pod: etcd aside, `etcdutl snapshot restore` with revisions bumped and compacted, the resources extracted'"
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand restore" -l wait-timeout -d 'Time limit of each wait (containers, redeployments), e.g. 20m, 1h, 90s; a bare number is seconds' -r
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand restore" -l poll-interval -d 'Time between checks while waiting (a bare number is milliseconds)' -r
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand restore" -l redo -d 'With --resume: do the redeploy step STEP (redeploy-etcd, ...) again from its start: a new forceRedeploymentReason, a new revision to wait for (when the one asked for never appeared)' -r
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand restore" -l root -d 'The node\'s root directory; every host path resolves under it' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand restore" -l dir -d 'The backup directory, as a path on the node (the wrapper `<dir>/upgrade-recovery.sh` sets UPGRADE_RECOVERY_DIR to its own)' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand restore" -l output -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand restore" -l resume -d 'Continue the recovery under way after its last completed step'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand restore" -l restart -d 'Forget the recovery under way and start from the first step'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand restore" -l step -d 'Stop after each phase'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand restore" -l force -d 'Skip the reboot check before the cluster phase (the OS deployment check stays)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand restore" -l restore-onto-other-os -d 'Last resort: restore the files although another OS deployment than the one pinned at backup is active (roll back instead if you can)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand restore" -l dry-run -d 'Print the plan with what is done; change nothing'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand restore" -l auto-resume -d 'After the files phase, install a oneshot unit that runs `restore --resume` on the next boot (it removes itself)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand restore" -l from-unit -d 'Started by that unit (it is removed first)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand restore" -l again -d 'Recover again from a backup that a recovery already completed from, with no failed upgrade since (puts its etcd snapshot back: every write since that recovery is lost)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand restore" -s v -l verbose -d 'More detail on stderr (-vv: every command run)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand restore" -s q -l quiet -d 'Only errors on stderr'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand restore" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand status" -l root -d 'The node\'s root directory; every host path resolves under it' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand status" -l dir -d 'The backup directory, as a path on the node (the wrapper `<dir>/upgrade-recovery.sh` sets UPGRADE_RECOVERY_DIR to its own)' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand status" -l output -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand status" -s v -l verbose -d 'More detail on stderr (-vv: every command run)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand status" -s q -l quiet -d 'Only errors on stderr'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand status" -s h -l help -d 'Print help'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand verify" -l root -d 'The node\'s root directory; every host path resolves under it' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand verify" -l dir -d 'The backup directory, as a path on the node (the wrapper `<dir>/upgrade-recovery.sh` sets UPGRADE_RECOVERY_DIR to its own)' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand verify" -l output -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand verify" -s v -l verbose -d 'More detail on stderr (-vv: every command run)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand verify" -s q -l quiet -d 'Only errors on stderr'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand verify" -s h -l help -d 'Print help'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand rollback" -l root -d 'The node\'s root directory; every host path resolves under it' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand rollback" -l dir -d 'The backup directory, as a path on the node (the wrapper `<dir>/upgrade-recovery.sh` sets UPGRADE_RECOVERY_DIR to its own)' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand rollback" -l output -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand rollback" -l dry-run -d 'Print the decision and the commands; change nothing'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand rollback" -l reboot -d 'Reboot at the end (systemctl reboot), once the next default is checked'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand rollback" -s v -l verbose -d 'More detail on stderr (-vv: every command run)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand rollback" -s q -l quiet -d 'Only errors on stderr'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand rollback" -s h -l help -d 'Print help'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand stateroot; and not __fish_seen_subcommand_from list cleanup" -l root -d 'The node\'s root directory; every host path resolves under it' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand stateroot; and not __fish_seen_subcommand_from list cleanup" -l dir -d 'The backup directory, as a path on the node (the wrapper `<dir>/upgrade-recovery.sh` sets UPGRADE_RECOVERY_DIR to its own)' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand stateroot; and not __fish_seen_subcommand_from list cleanup" -l output -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand stateroot; and not __fish_seen_subcommand_from list cleanup" -s v -l verbose -d 'More detail on stderr (-vv: every command run)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand stateroot; and not __fish_seen_subcommand_from list cleanup" -s q -l quiet -d 'Only errors on stderr'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand stateroot; and not __fish_seen_subcommand_from list cleanup" -s h -l help -d 'Print help'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand stateroot; and not __fish_seen_subcommand_from list cleanup" -f -a "list" -d 'Stateroots with their deployments, booted and pinned marks, disk use'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand stateroot; and not __fish_seen_subcommand_from list cleanup" -f -a "cleanup" -d 'Undeploy a stateroot\'s deployments and remove its directory'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand stateroot; and __fish_seen_subcommand_from list" -l root -d 'The node\'s root directory; every host path resolves under it' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand stateroot; and __fish_seen_subcommand_from list" -l dir -d 'The backup directory, as a path on the node (the wrapper `<dir>/upgrade-recovery.sh` sets UPGRADE_RECOVERY_DIR to its own)' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand stateroot; and __fish_seen_subcommand_from list" -l output -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand stateroot; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More detail on stderr (-vv: every command run)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand stateroot; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Only errors on stderr'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand stateroot; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand stateroot; and __fish_seen_subcommand_from cleanup" -l root -d 'The node\'s root directory; every host path resolves under it' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand stateroot; and __fish_seen_subcommand_from cleanup" -l dir -d 'The backup directory, as a path on the node (the wrapper `<dir>/upgrade-recovery.sh` sets UPGRADE_RECOVERY_DIR to its own)' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand stateroot; and __fish_seen_subcommand_from cleanup" -l output -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand stateroot; and __fish_seen_subcommand_from cleanup" -l dry-run -d 'Print the exact steps; change nothing'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand stateroot; and __fish_seen_subcommand_from cleanup" -s v -l verbose -d 'More detail on stderr (-vv: every command run)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand stateroot; and __fish_seen_subcommand_from cleanup" -s q -l quiet -d 'Only errors on stderr'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand stateroot; and __fish_seen_subcommand_from cleanup" -s h -l help -d 'Print help'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand extract" -l to -d 'Directory to copy them into (created; node paths kept below it)' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand extract" -l root -d 'The node\'s root directory; every host path resolves under it' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand extract" -l dir -d 'The backup directory, as a path on the node (the wrapper `<dir>/upgrade-recovery.sh` sets UPGRADE_RECOVERY_DIR to its own)' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand extract" -l output -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand extract" -l exact -d 'Also recreate device nodes, setuid/setgid bits and file capabilities'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand extract" -s v -l verbose -d 'More detail on stderr (-vv: every command run)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand extract" -s q -l quiet -d 'Only errors on stderr'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand extract" -s h -l help -d 'Print help'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand oadp; and not __fish_seen_subcommand_from lint" -l root -d 'The node\'s root directory; every host path resolves under it' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand oadp; and not __fish_seen_subcommand_from lint" -l dir -d 'The backup directory, as a path on the node (the wrapper `<dir>/upgrade-recovery.sh` sets UPGRADE_RECOVERY_DIR to its own)' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand oadp; and not __fish_seen_subcommand_from lint" -l output -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand oadp; and not __fish_seen_subcommand_from lint" -s v -l verbose -d 'More detail on stderr (-vv: every command run)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand oadp; and not __fish_seen_subcommand_from lint" -s q -l quiet -d 'Only errors on stderr'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand oadp; and not __fish_seen_subcommand_from lint" -s h -l help -d 'Print help'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand oadp; and not __fish_seen_subcommand_from lint" -f -a "lint" -d 'Check Backup/Restore CRs (YAML or JSON, multi-document, or the ConfigMaps that hold them) for the LVM Storage fields and the pairing of Restores with Backups; exit 1 on findings, 2 on unreadable input'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand oadp; and __fish_seen_subcommand_from lint" -l root -d 'The node\'s root directory; every host path resolves under it' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand oadp; and __fish_seen_subcommand_from lint" -l dir -d 'The backup directory, as a path on the node (the wrapper `<dir>/upgrade-recovery.sh` sets UPGRADE_RECOVERY_DIR to its own)' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand oadp; and __fish_seen_subcommand_from lint" -l output -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand oadp; and __fish_seen_subcommand_from lint" -s v -l verbose -d 'More detail on stderr (-vv: every command run)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand oadp; and __fish_seen_subcommand_from lint" -s q -l quiet -d 'Only errors on stderr'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand oadp; and __fish_seen_subcommand_from lint" -s h -l help -d 'Print help'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand ibu; and not __fish_seen_subcommand_from status cleanup" -l root -d 'The node\'s root directory; every host path resolves under it' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand ibu; and not __fish_seen_subcommand_from status cleanup" -l dir -d 'The backup directory, as a path on the node (the wrapper `<dir>/upgrade-recovery.sh` sets UPGRADE_RECOVERY_DIR to its own)' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand ibu; and not __fish_seen_subcommand_from status cleanup" -l output -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand ibu; and not __fish_seen_subcommand_from status cleanup" -s v -l verbose -d 'More detail on stderr (-vv: every command run)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand ibu; and not __fish_seen_subcommand_from status cleanup" -s q -l quiet -d 'Only errors on stderr'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand ibu; and not __fish_seen_subcommand_from status cleanup" -s h -l help -d 'Print help'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand ibu; and not __fish_seen_subcommand_from status cleanup" -f -a "status" -d 'The ImageBasedUpgrade CR, stateroots, LCA workspace, OADP locations'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand ibu; and not __fish_seen_subcommand_from status cleanup" -f -a "cleanup" -d 'The manual cleanup after AbortFailed/FinalizeFailed, then the annotation that makes LCA retry'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand ibu; and __fish_seen_subcommand_from status" -l root -d 'The node\'s root directory; every host path resolves under it' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand ibu; and __fish_seen_subcommand_from status" -l dir -d 'The backup directory, as a path on the node (the wrapper `<dir>/upgrade-recovery.sh` sets UPGRADE_RECOVERY_DIR to its own)' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand ibu; and __fish_seen_subcommand_from status" -l output -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand ibu; and __fish_seen_subcommand_from status" -s v -l verbose -d 'More detail on stderr (-vv: every command run)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand ibu; and __fish_seen_subcommand_from status" -s q -l quiet -d 'Only errors on stderr'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand ibu; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand ibu; and __fish_seen_subcommand_from cleanup" -l wait -d 'Seconds to wait for Velero to process each DeleteBackupRequest' -r
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand ibu; and __fish_seen_subcommand_from cleanup" -l pod-wait -d 'Seconds to wait for the pod of LCA\'s stateroot setup Job to go before removing stateroots (LCA\'s own bound)' -r
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand ibu; and __fish_seen_subcommand_from cleanup" -l root -d 'The node\'s root directory; every host path resolves under it' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand ibu; and __fish_seen_subcommand_from cleanup" -l dir -d 'The backup directory, as a path on the node (the wrapper `<dir>/upgrade-recovery.sh` sets UPGRADE_RECOVERY_DIR to its own)' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand ibu; and __fish_seen_subcommand_from cleanup" -l output -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand ibu; and __fish_seen_subcommand_from cleanup" -l dry-run -d 'List the steps; change nothing'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand ibu; and __fish_seen_subcommand_from cleanup" -l force -d 'Run even when the CR is not in AbortFailed/FinalizeFailed'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand ibu; and __fish_seen_subcommand_from cleanup" -l without-bucket -d 'When a BackupStorageLocation is not Available: delete the Backup CRs without their data, which stays in the bucket'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand ibu; and __fish_seen_subcommand_from cleanup" -s v -l verbose -d 'More detail on stderr (-vv: every command run)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand ibu; and __fish_seen_subcommand_from cleanup" -s q -l quiet -d 'Only errors on stderr'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand ibu; and __fish_seen_subcommand_from cleanup" -s h -l help -d 'Print help'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand report" -l to -d 'The .tar.gz to write' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand report" -l root -d 'The node\'s root directory; every host path resolves under it' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand report" -l dir -d 'The backup directory, as a path on the node (the wrapper `<dir>/upgrade-recovery.sh` sets UPGRADE_RECOVERY_DIR to its own)' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand report" -l output -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand report" -s v -l verbose -d 'More detail on stderr (-vv: every command run)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand report" -s q -l quiet -d 'Only errors on stderr'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand report" -s h -l help -d 'Print help'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand tree; and not __fish_seen_subcommand_from archive sync" -l root -d 'The node\'s root directory; every host path resolves under it' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand tree; and not __fish_seen_subcommand_from archive sync" -l dir -d 'The backup directory, as a path on the node (the wrapper `<dir>/upgrade-recovery.sh` sets UPGRADE_RECOVERY_DIR to its own)' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand tree; and not __fish_seen_subcommand_from archive sync" -l output -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand tree; and not __fish_seen_subcommand_from archive sync" -s v -l verbose -d 'More detail on stderr (-vv: every command run)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand tree; and not __fish_seen_subcommand_from archive sync" -s q -l quiet -d 'Only errors on stderr'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand tree; and not __fish_seen_subcommand_from archive sync" -s h -l help -d 'Print help'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand tree; and not __fish_seen_subcommand_from archive sync" -f -a "archive" -d 'Archive DIR into OUT (tar+zstd with per-file sha256)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand tree; and not __fish_seen_subcommand_from archive sync" -f -a "sync" -d 'Make DIR equal ARCHIVE (verified first); extra files deleted'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand tree; and __fish_seen_subcommand_from archive" -l level -r
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand tree; and __fish_seen_subcommand_from archive" -l threads -r
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand tree; and __fish_seen_subcommand_from archive" -l root -d 'The node\'s root directory; every host path resolves under it' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand tree; and __fish_seen_subcommand_from archive" -l dir -d 'The backup directory, as a path on the node (the wrapper `<dir>/upgrade-recovery.sh` sets UPGRADE_RECOVERY_DIR to its own)' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand tree; and __fish_seen_subcommand_from archive" -l output -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand tree; and __fish_seen_subcommand_from archive" -s v -l verbose -d 'More detail on stderr (-vv: every command run)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand tree; and __fish_seen_subcommand_from archive" -s q -l quiet -d 'Only errors on stderr'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand tree; and __fish_seen_subcommand_from archive" -s h -l help -d 'Print help'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand tree; and __fish_seen_subcommand_from sync" -l exclude-from -d 'A file of paths relative to DIR to leave alone' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand tree; and __fish_seen_subcommand_from sync" -l root -d 'The node\'s root directory; every host path resolves under it' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand tree; and __fish_seen_subcommand_from sync" -l dir -d 'The backup directory, as a path on the node (the wrapper `<dir>/upgrade-recovery.sh` sets UPGRADE_RECOVERY_DIR to its own)' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand tree; and __fish_seen_subcommand_from sync" -l output -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand tree; and __fish_seen_subcommand_from sync" -s v -l verbose -d 'More detail on stderr (-vv: every command run)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand tree; and __fish_seen_subcommand_from sync" -s q -l quiet -d 'Only errors on stderr'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand tree; and __fish_seen_subcommand_from sync" -s h -l help -d 'Print help'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand generate-docs" -l readme -d 'Also rewrite the table of states between its markers in this file (the README)' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand generate-docs" -l root -d 'The node\'s root directory; every host path resolves under it' -r -F
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand generate-docs" -l output -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand generate-docs" -s v -l verbose -d 'More detail on stderr (-vv: every command run)'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand generate-docs" -s q -l quiet -d 'Only errors on stderr'
complete -c upgrade-recovery -n "__fish_upgrade_recovery_using_subcommand generate-docs" -s h -l help -d 'Print help'
